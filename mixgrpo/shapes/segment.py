"""Palette segmentation and connected components, batched in torch (no per-pixel Python).

1. **Work resolution.** Images are resized to ``64 × 64`` (area averaging when shrinking, bilinear
   when enlarging), so thresholds below are in work pixels whatever the input size.
2. **Segmentation.** For each pixel ``x`` and palette colour ``p_c``: ``d_c = ‖x − p_c‖₂`` (RGB in
   [0, 1]). The pixel belongs to colour ``c* = argmin_c d_c`` when ``d_c* < 0.25``
   (:data:`SEGMENT_RADIUS`); otherwise it is background (every background the renderer draws is
   ≥ 0.4 from the palette).
3. **Components.** 8-connected components of each colour's mask, found by label propagation:
   every pixel starts with its own index; each round takes the 3×3 max over same-colour
   neighbours, then *pointer-jumps* (a label ``L`` is the index of a pixel of the same component,
   whose label is ≥ ``L``: read it). Rounds stop when nothing changes; each component ends up
   labelled by its largest pixel index. Components under :data:`MIN_AREA` (6) pixels are dropped.
4. **Features** per component (scatter sums over its pixels): area ``A`` (work pixels), centroid
   ``(cx, cy)`` as fractions of the side, bounding box ``w × h``, mean RGB, fill ratio
   ``A / (w·h)`` and the top-half fraction ``A_top / A`` (pixels above the box's middle row; the
   middle row of an odd-height box counts half).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .world import PALETTE

WORK_SIZE = 64
SEGMENT_RADIUS = 0.25
MIN_AREA = 6  # components smaller than this (work pixels) are dropped before any scoring
MAX_ROUNDS = 200


@dataclass
class Components:
    """Flat arrays over every kept component of a batch (numpy, length K)."""

    image: np.ndarray     # int64, which image of the batch
    colour: np.ndarray    # int64, index into the palette of the pixels' nearest colour
    area: np.ndarray      # float64, work pixels
    cx: np.ndarray        # centroid, fraction of the width (0 = left)
    cy: np.ndarray        # centroid, fraction of the height (0 = top)
    width: np.ndarray     # bounding box, work pixels
    height: np.ndarray
    fill: np.ndarray      # area / (width · height)
    top: np.ndarray       # share of the area in the top half of the box
    mean_rgb: np.ndarray  # [K, 3]

    def of_image(self, b: int) -> Components:
        keep = self.image == b
        return Components(**{k: v[keep] for k, v in vars(self).items()})

    def __len__(self) -> int:
        return len(self.area)


def empty_components() -> Components:
    """No components at all (e.g. a batch of plain backgrounds)."""
    none = np.zeros(0)
    return Components(image=np.zeros(0, dtype=np.int64), colour=np.zeros(0, dtype=np.int64), area=none, cx=none,
                      cy=none, width=none, height=none, fill=none, top=none, mean_rgb=np.zeros((0, 3)))


def to_work_resolution(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` → float32 ``[B, 3, 64, 64]``."""
    images = images.float()
    if images.shape[-2:] == (WORK_SIZE, WORK_SIZE):
        return images
    if images.shape[-2] >= WORK_SIZE and images.shape[-1] >= WORK_SIZE:
        return F.interpolate(images, size=(WORK_SIZE, WORK_SIZE), mode="area")
    return F.interpolate(images, size=(WORK_SIZE, WORK_SIZE), mode="bilinear", align_corners=False)


def palette_distance(images: torch.Tensor) -> torch.Tensor:
    """``d[b, c, y, x] = ‖image[b, :, y, x] − PALETTE[c]‖₂`` → ``[B, C, H, W]``."""
    palette = PALETTE.to(images.device)
    sq = (images.square().sum(1, keepdim=True) - 2 * torch.einsum("bkhw,ck->bchw", images, palette)
          + palette.square().sum(1)[None, :, None, None])
    return sq.clamp_min(0).sqrt()


def label_components(mask: torch.Tensor) -> torch.Tensor:
    """8-connected component labels of boolean masks ``[N, H, W]`` → int64 ``[N, H·W]``
    (0 outside the mask, else 1 + the largest flat pixel index of the component)."""
    n, h, w = mask.shape
    keep = mask.reshape(n, 1, h, w).float()
    labels = torch.arange(1, h * w + 1, dtype=torch.float32).reshape(1, 1, h, w) * keep
    for _ in range(MAX_ROUNDS):
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * keep
        flat = grown.reshape(n, h * w)
        jumped = flat.gather(1, (flat.long() - 1).clamp_min(0)) * (flat > 0)
        new = torch.maximum(flat, jumped).reshape(n, 1, h, w)
        if torch.equal(new, labels):
            break
        labels = new
    return labels.reshape(n, h * w).long()


def find_components(images: torch.Tensor) -> Components:
    """Segment a batch ``[B, 3, H, W]`` in [0, 1] and measure every component (module docstring)."""
    work = to_work_resolution(images)
    b, _, h, w = work.shape
    dist = palette_distance(work)
    d_min, nearest = dist.min(dim=1)
    inside = d_min < SEGMENT_RADIUS
    masks = torch.stack([inside & (nearest == c) for c in range(PALETTE.shape[0])], dim=1)  # [B, C, h, w]
    planes = masks.reshape(-1, h, w)
    used = planes.flatten(1).any(1).nonzero().squeeze(1)
    if used.numel() == 0:
        return empty_components()
    labels = label_components(planes[used])  # [N, h·w]

    plane_of_pixel, pixel = (labels > 0).nonzero(as_tuple=True)
    key = used[plane_of_pixel] * (h * w + 1) + labels[plane_of_pixel, pixel]
    ids, comp = torch.unique(key, return_inverse=True)
    k = len(ids)
    plane = ids // (h * w + 1)
    ys = (pixel // w).double()
    xs = (pixel % w).double()

    def total(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(k, dtype=torch.float64).index_add_(0, comp, values)

    def extreme(values: torch.Tensor, how: str) -> torch.Tensor:
        return torch.zeros(k, dtype=torch.float64).scatter_reduce_(0, comp, values, how, include_self=False)

    area = total(torch.ones_like(xs))
    x0, x1, y0, y1 = extreme(xs, "amin"), extreme(xs, "amax"), extreme(ys, "amin"), extreme(ys, "amax")
    mid = (y0 + y1)[comp] / 2
    top = total((ys < mid).double() + 0.5 * (ys == mid).double())
    image_of_pixel = plane[comp] // PALETTE.shape[0]
    rgb = work.permute(0, 2, 3, 1).reshape(b, h * w, 3)[image_of_pixel, pixel].double()
    mean_rgb = torch.stack([total(rgb[:, i]) for i in range(3)], dim=1) / area[:, None]

    width, height = x1 - x0 + 1, y1 - y0 + 1
    found = Components(
        image=(plane // PALETTE.shape[0]).numpy(), colour=(plane % PALETTE.shape[0]).numpy(),
        area=area.numpy(), cx=((total(xs) / area + 0.5) / w).numpy(), cy=((total(ys) / area + 0.5) / h).numpy(),
        width=width.numpy(), height=height.numpy(), fill=(area / (width * height)).numpy(),
        top=(top / area).numpy(), mean_rgb=mean_rgb.numpy())
    keep = found.area >= MIN_AREA
    return Components(**{name: v[keep] for name, v in vars(found).items()})

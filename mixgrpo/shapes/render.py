"""Ground-truth renders of shapes prompts: plain background, flat palette-coloured shapes.

Layout rules (all lengths are fractions of the image side, the origin is the top-left corner):

- every instance gets a half-size ``r ~ U(0.09, 0.15)``: a circle of radius r, an axis-aligned
  square of side 2r, an upright isosceles triangle with apex ``(cx, cy − r)`` and base corners
  ``(cx ± r, cy + r)``; the colour is the group's, or a uniformly drawn palette colour for an
  uncoloured group (per instance);
- centres are an *anchor* read off the prompt's structure plus a uniform jitter of up to ±0.07 per
  axis (:func:`anchor_points`; the jitter window is cut to what is allowed), kept inside the image
  with a margin ``r + 0.03`` and inside the group's position region: left ``cx ≤ 0.3``, right
  ``cx ≥ 0.7``, top ``cy ≤ 0.3``, bottom ``cy ≥ 0.7``, centre ``|cx − ½|, |cy − ½| ≤ 0.05``
  (≤ 0.15 for a group of several, which needs the room). Anchors keep the layout of a prompt to
  one mode with local variation, the way a photographer frames "a cat on the left" — a model has
  to learn where things go, not to pick one of countless equally likely layouts from noise. A
  prompt whose anchors cannot be satisfied falls back to centres uniform inside the regions;
- bounding boxes keep a gap of at least 0.04 between instances;
- a relation holds with a clear margin: for "above", the subject centre is at least 0.25 higher
  than the reference centre and no further sideways than up (``|dx| ≤ |dy|``); likewise below,
  left of, right of;
- layouts are drawn by rejection: 200 jitters of the anchors; then uniform centres (500 tries, then
  every radius shrinks by 15 % and it tries again; after 20 rounds a prompt whose positions and
  relation contradict each other raises :class:`~mixgrpo.errors.PromptError`);
- the background is a dark or light grey with a faint tint (:mod:`mixgrpo.shapes.world`).

Drawing uses PIL at twice the size, then a 2×2 box reduction, so edges are anti-aliased.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import PromptError
from .prompts import ObjectSpec, PromptSpec, parse_prompt
from .world import (
    BACKGROUND_DARK,
    BACKGROUND_LIGHT,
    BACKGROUND_TINT,
    COLOURS,
    PALETTE_RGB255,
    SHAPES,
)

RADIUS_RANGE = (0.09, 0.15)
JITTER = 0.07
SPACING = 0.3
ANCHORED_TRIES = 200
MARGIN = 0.03
GAP = 0.04
RELATION_MIN_OFFSET = 0.25
SUPERSAMPLE = 2

# position → (cx range, cy range) of the centre; None: anywhere within the margin
_REGIONS: dict[str | None, tuple[tuple[float, float], tuple[float, float]]] = {
    None: ((0.0, 1.0), (0.0, 1.0)),
    "left": ((0.0, 0.3), (0.0, 1.0)),
    "right": ((0.7, 1.0), (0.0, 1.0)),
    "top": ((0.0, 1.0), (0.0, 0.3)),
    "bottom": ((0.0, 1.0), (0.7, 1.0)),
    "centre": ((0.45, 0.55), (0.45, 0.55)),
    "centre, several": ((0.35, 0.65), (0.35, 0.65)),
}


@dataclass(frozen=True)
class PlacedObject:
    """One drawn instance: centre ``(cx, cy)`` and half-size ``radius``, as fractions of the side."""

    shape: str
    colour: str
    cx: float
    cy: float
    radius: float
    group: int  # index of its group in ``spec.objects``


def _as_spec(spec_or_prompt: PromptSpec | str) -> PromptSpec:
    return parse_prompt(spec_or_prompt) if isinstance(spec_or_prompt, str) else spec_or_prompt


def _make_rng(generator: torch.Generator | None, seed: int | None) -> np.random.Generator:
    if generator is not None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return np.random.default_rng(seed)


def _relation_holds(relation: str, subject: PlacedObject, reference: PlacedObject) -> bool:
    dx, dy = subject.cx - reference.cx, subject.cy - reference.cy
    along, across = {"above": (-dy, dx), "below": (dy, dx), "left_of": (-dx, dy), "right_of": (dx, dy)}[relation]
    return along >= RELATION_MIN_OFFSET and abs(across) <= along


def _separated(a: PlacedObject, b: PlacedObject) -> bool:
    reach = a.radius + b.radius + GAP
    return abs(a.cx - b.cx) >= reach or abs(a.cy - b.cy) >= reach


# where a group sits: by its position word, by its side of a relation, or (no position) by how many
# unplaced groups share the image
_HOMES = {"left": (0.2, 0.5), "right": (0.8, 0.5), "top": (0.5, 0.2), "bottom": (0.5, 0.8), "centre": (0.5, 0.5)}
_RELATION_HOMES = {"above": ((0.5, 0.3), (0.5, 0.7)), "below": ((0.5, 0.7), (0.5, 0.3)),
                   "left_of": ((0.3, 0.5), (0.7, 0.5)), "right_of": ((0.7, 0.5), (0.3, 0.5))}
_FREE_HOMES = {1: ((0.5, 0.5),), 2: ((0.3, 0.5), (0.7, 0.5))}


def anchor_points(spec: PromptSpec) -> list[tuple[float, float]]:
    """The anchor of every instance, in the order of :func:`sample_layout`'s instances.

    A group's *home* is its position's point (left (0.2, ½), right (0.8, ½), top (½, 0.2), bottom
    (½, 0.8), centre (½, ½)); else its side of the relation (subject and reference 0.4 apart along
    the relation's axis, centred); else the centre for a lone group or beside a placed one, and
    (0.3, ½), (0.7, ½) for two unplaced groups side by side. A group's instances line up around
    its home, :data:`SPACING` apart: vertically for a home left or right of the centre,
    horizontally otherwise.
    """
    free = [g for g, obj in enumerate(spec.objects) if obj.position is None]
    homes = []
    for g, obj in enumerate(spec.objects):
        if obj.position is not None:
            homes.append(_HOMES[obj.position])
        elif spec.relation is not None:
            homes.append(_RELATION_HOMES[spec.relation][g])
        else:
            homes.append(_FREE_HOMES[len(spec.objects)][g] if len(free) == len(spec.objects) else (0.5, 0.5))
    anchors = []
    for obj, (hx, hy) in zip(spec.objects, homes):
        vertical = abs(hx - 0.5) > abs(hy - 0.5)
        for i in range(obj.count):
            offset = (i - (obj.count - 1) / 2) * SPACING
            anchors.append((hx, hy + offset) if vertical else (hx + offset, hy))
    return anchors


def _overlap(lo: float, hi: float, lo_window: float, hi_window: float) -> tuple[float, float]:
    """``[lo, hi] ∩ [lo_window, hi_window]``, or ``[lo, hi]`` itself where they do not meet."""
    a, b = max(lo, lo_window), min(hi, hi_window)
    return (a, b) if a <= b else (lo, hi)


def _try_layout(spec: PromptSpec, colours: list[str], radii: list[float], rng,
                anchors: list[tuple[float, float]] | None = None) -> list[PlacedObject] | None:
    placed: list[PlacedObject] = []
    k = 0
    for g, obj in enumerate(spec.objects):
        region = "centre, several" if obj.position == "centre" and obj.count > 1 else obj.position
        (x0, x1), (y0, y1) = _REGIONS[region]
        for _ in range(obj.count):
            r = radii[k]
            lo_x, hi_x = max(x0, r + MARGIN), min(x1, 1 - r - MARGIN)
            lo_y, hi_y = max(y0, r + MARGIN), min(y1, 1 - r - MARGIN)
            if lo_x > hi_x or lo_y > hi_y:
                return None
            if anchors is not None:  # the jitter window, cut to the allowed range
                ax, ay = anchors[k]
                lo_x, hi_x = _overlap(lo_x, hi_x, ax - JITTER, ax + JITTER)
                lo_y, hi_y = _overlap(lo_y, hi_y, ay - JITTER, ay + JITTER)
            cx, cy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
            new = PlacedObject(obj.shape, colours[k], float(cx), float(cy), r, g)
            if not all(_separated(new, old) for old in placed):
                return None
            placed.append(new)
            k += 1
    if spec.relation is not None:
        subjects = [p for p in placed if p.group == 0]
        references = [p for p in placed if p.group == 1]
        if not all(_relation_holds(spec.relation, s, r) for s in subjects for r in references):
            return None
    return placed


def sample_layout(spec_or_prompt: PromptSpec | str, rng: np.random.Generator) -> list[PlacedObject]:
    """Colours, sizes and non-overlapping positions of every instance (rules in the module docstring)."""
    spec = _as_spec(spec_or_prompt)
    groups: list[ObjectSpec] = [o for o in spec.objects for _ in range(o.count)]
    colours = [o.colour if o.colour is not None else COLOURS[rng.integers(len(COLOURS))] for o in groups]
    radii = [float(rng.uniform(*RADIUS_RANGE)) for _ in groups]
    anchors = anchor_points(spec)
    for _ in range(ANCHORED_TRIES):
        layout = _try_layout(spec, colours, radii, rng, anchors)
        if layout is not None:
            return layout
    for _ in range(20):  # no jitter of the anchors fits: uniform centres, shrinking the sizes
        for _ in range(500):
            layout = _try_layout(spec, colours, radii, rng)
            if layout is not None:
                return layout
        radii = [r * 0.85 for r in radii]
    raise PromptError(f"no layout satisfies {spec.text!r}: its positions and relation contradict each other "
                      "(e.g. 'a circle on the left to the right of a square on the right')")


def sample_background(rng: np.random.Generator) -> tuple[float, float, float]:
    """A dark or light grey with a faint per-channel tint, RGB in [0, 1]."""
    lo, hi = BACKGROUND_DARK if rng.random() < 0.5 else BACKGROUND_LIGHT
    grey = rng.uniform(lo, hi)
    tint = rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=3)
    return tuple(float(v) for v in np.clip(grey + tint, 0.0, 1.0))


def _draw(layout: list[PlacedObject], size: int, mode: str, background, fill_of) -> Image.Image:
    """Draw every instance at ``SUPERSAMPLE``× the size, then box-reduce (anti-aliased edges)."""
    big = size * SUPERSAMPLE
    image = Image.new(mode, (big, big), background)
    pen = ImageDraw.Draw(image)
    for p in layout:
        cx, cy, r = p.cx * big, p.cy * big, p.radius * big
        fill = fill_of(p)
        if p.shape == "circle":
            pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif p.shape == "square":
            pen.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            pen.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    return image.reduce(SUPERSAMPLE)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image).copy()
    return torch.from_numpy(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1).float().div_(255.0)


def draw_layout(layout: list[PlacedObject], background: tuple[float, float, float], size: int = 128) -> torch.Tensor:
    """Paint ``layout`` on a plain ``background``: float32 ``[3, size, size]`` in [0, 1]."""
    image = _draw(layout, size, "RGB", tuple(round(255 * v) for v in background), lambda p: PALETTE_RGB255[p.colour])
    return _to_tensor(image)


def draw_shape_masks(layout: list[PlacedObject], size: int = 128) -> torch.Tensor:
    """Coverage of each shape kind (``SHAPES`` order): float32 ``[3, size, size]`` in [0, 1], drawn with
    the same geometry and anti-aliasing as :func:`draw_layout` (pretraining targets, not the reward)."""
    return torch.cat([_to_tensor(_draw([p for p in layout if p.shape == kind], size, "L", 0, lambda p: 255))
                      for kind in SHAPES])


def _layout_and_background(spec_or_prompt, generator, seed):
    rng = _make_rng(generator, seed)
    layout = sample_layout(spec_or_prompt, rng)
    return layout, sample_background(rng)


def render(spec_or_prompt: PromptSpec | str, size: int = 128, generator: torch.Generator | None = None,
           seed: int | None = None) -> torch.Tensor:
    """Ground-truth image of a prompt (text or spec): float32 ``[3, size, size]`` in [0, 1].

    Randomness comes from ``generator`` if given, else from ``seed`` (None: fresh entropy).
    """
    layout, background = _layout_and_background(spec_or_prompt, generator, seed)
    return draw_layout(layout, background, size)


def render_batch(prompts: list[PromptSpec | str], size: int = 128, generator: torch.Generator | None = None,
                 seed: int | None = None, with_masks: bool = False):
    """One render per prompt: float32 ``[B, 3, size, size]``; image ``i`` uses seed ``seed + i``
    (or draws from ``generator``), so a batch is reproducible image by image.

    With ``with_masks`` it returns ``(images, masks)``, ``masks[i]`` the :func:`draw_shape_masks` of
    image ``i``'s layout (the images are the same either way).
    """
    images = torch.zeros(len(prompts), 3, size, size)
    masks = torch.zeros(len(prompts), len(SHAPES), size, size) if with_masks else None
    for i, prompt in enumerate(prompts):
        layout, background = _layout_and_background(prompt, generator, None if seed is None else seed + i)
        images[i] = draw_layout(layout, background, size)
        if with_masks:
            masks[i] = draw_shape_masks(layout, size)
    return (images, masks) if with_masks else images

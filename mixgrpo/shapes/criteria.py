"""Soft, per-component evidence and the per-criterion scores of one image (numpy, small arrays).

Every function maps to [0, 1] and is piecewise smooth, so a half-right image earns half credit.
``ramp(v, full, zero)`` is 1 at ``v = full`` and beyond, 0 at ``v = zero`` and beyond, linear between
(``full`` may lie on either side of ``zero``).

Component evidence (``k`` indexes the components of :mod:`mixgrpo.shapes.segment`):

- **objectness** ``o_k = ramp(A_k, 2·A_min, A_min)·ramp(side_k, 0.45, 0.7)`` with ``A_min = 12``
  work pixels (0.3 % of the image) and ``side_k`` the larger box side as a fraction of the image:
  specks are not objects, and neither is a blob covering most of the image;
- **shape likelihood** ``P_k(s) = exp(−½ Σ_f (max(0, |f_k − μ_{s,f}| − τ_{s,f}) / σ_f)²)`` over
  three features ``f`` (:data:`SHAPE_FEATURES`): the fill ratio (circle 0.78 ± 0.12, square
  0.99 ± 0.02, triangle 0.56 ± 0.07; σ 0.04), the top-half fraction (circle and square 0.5 ± 0.05,
  triangle 0.27 ± 0.04; σ 0.05) and the log aspect ratio (0 ± 0.1 for all; σ 0.15). The bands
  ``μ ± τ`` cover what ground-truth renders measure at 64–256 px (an ideal circle fills π/4 of its
  box, but a discretised one of 10–17 work pixels measures 0.66–0.90); circle and square meet at
  fill 0.94 with ``P ≈ 0.61`` each;
- **colour match** ``C_k(c) = ramp(‖rgb_k − p_c‖, 0.12, 0.3)`` of the component's mean colour;
  ``C_k(any) = max_c C_k(c)``;
- **match** of a group (shape s, colour c or any) ``w_k = o_k · P_k(s) · C_k(c)``.

Criteria of a group ``g`` (count n) and of the image:

- presence ``= max_k o_k·P_k(s)·C_k(any)`` — the shape is there, in some palette colour;
- colour ``= ½·max_k o_k·C_k(c) + ½·max_k w_k`` — the colour is there, and on the right shape;
- count: soft count ``n̂ = Σ_k w_k``; ``1 − (n − n̂)/n`` when short, ``1 − (n̂ − n)/(n + 1)`` when
  over, clipped to [0, 1] (one missing of three: 0.67; one extra of one: 0.5);
- position ``=`` mean of the ``n`` largest ``w_k·R_k(pos)`` (missing instances count 0), where
  ``R`` is 1 inside the region and falls linearly to 0 at the image's middle line: left
  ``ramp(cx, ⅓, ½)``, right ``ramp(1 − cx, ⅓, ½)``, top/bottom alike with cy, centre
  ``ramp(max(|cx − ½|, |cy − ½|), ⅙, ⅓)``;
- relation ``= max_{i≠j} w_i^subject · w_j^reference · ramp(−Δ, 0.1, 0)`` with Δ the signed
  centroid offset along the relation's axis (for "above": ``cy_subject − cy_reference``): full
  credit once the subject is 10 % of the image beyond the reference;
- clean (a multiplier on the whole score, not a criterion of its own): with ``M = Σ_k o_k·C_k(any)``
  the soft number of palette objects of any shape and ``N`` the instances the prompt asks for,
  ``1 − max(0, M − N)/(N + 1)`` clipped to [0, 1]; an image cluttered with unrequested objects (a
  model spraying coloured blobs to satisfy every prompt at once) loses its credit.
"""

from __future__ import annotations

import numpy as np

from .prompts import ObjectSpec, PromptSpec
from .segment import WORK_SIZE, Components
from .world import COLOURS, PALETTE, SHAPES

MIN_OBJECT_AREA = 12.0
#: feature → (per-shape (centre μ, tolerance τ) in SHAPES order, width σ)
SHAPE_FEATURES: dict[str, tuple[tuple[tuple[float, float], ...], float]] = {
    "fill": (((0.78, 0.12), (0.99, 0.02), (0.56, 0.07)), 0.04),
    "top": (((0.5, 0.05), (0.5, 0.05), (0.27, 0.04)), 0.05),
    "log_aspect": (((0.0, 0.1), (0.0, 0.1), (0.0, 0.1)), 0.15),
}
COLOUR_FULL, COLOUR_ZERO = 0.12, 0.3
RELATION_MARGIN = 0.1

_PALETTE = PALETTE.double().numpy()


def ramp(v, full: float, zero: float):
    """1 at ``v`` on the ``full`` side, 0 at ``zero`` and beyond, linear between (either direction)."""
    return np.clip((np.asarray(v, dtype=np.float64) - zero) / (full - zero), 0.0, 1.0)


class Evidence:
    """Objectness, shape likelihoods ``[K, 3]`` and colour matches ``[K, 6]`` of one image's components."""

    def __init__(self, comps: Components):
        self.comps = comps
        side = np.maximum(comps.width, comps.height) / WORK_SIZE
        self.objectness = ramp(comps.area, 2 * MIN_OBJECT_AREA, MIN_OBJECT_AREA) * ramp(side, 0.45, 0.7)
        features = {"fill": comps.fill, "top": comps.top, "log_aspect": np.log(comps.width / comps.height)}
        energy = np.zeros((len(comps), len(SHAPES)))
        for name, (bands, width) in SHAPE_FEATURES.items():
            centre, tol = np.asarray(bands).T
            gap = np.abs(features[name][:, None] - centre[None, :])
            energy += (np.maximum(gap - tol[None, :], 0.0) / width) ** 2
        self.shape = np.exp(-0.5 * energy)
        distance = np.linalg.norm(comps.mean_rgb[:, None, :] - _PALETTE[None, :, :], axis=2)
        self.colour = ramp(distance, COLOUR_FULL, COLOUR_ZERO)
        self.any_colour = self.colour.max(axis=1) if len(comps) else np.zeros(0)

    def colour_match(self, colour: str | None) -> np.ndarray:
        return self.any_colour if colour is None else self.colour[:, COLOURS.index(colour)]

    def match(self, obj: ObjectSpec) -> np.ndarray:
        """``w_k = o_k · P_k(s) · C_k(c)``."""
        return self.objectness * self.shape[:, SHAPES.index(obj.shape)] * self.colour_match(obj.colour)


def _max(values: np.ndarray) -> float:
    return float(values.max()) if values.size else 0.0


def count_score(found: float, wanted: int) -> float:
    """Asymmetric linear count credit (module docstring)."""
    if found <= wanted:
        return max(0.0, 1.0 - (wanted - found) / wanted)
    return max(0.0, 1.0 - (found - wanted) / (wanted + 1))


def region_score(position: str, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """``R(pos)`` of centroids in image fractions."""
    if position == "left":
        return ramp(cx, 1 / 3, 0.5)
    if position == "right":
        return ramp(1 - cx, 1 / 3, 0.5)
    if position == "top":
        return ramp(cy, 1 / 3, 0.5)
    if position == "bottom":
        return ramp(1 - cy, 1 / 3, 0.5)
    return ramp(np.maximum(np.abs(cx - 0.5), np.abs(cy - 0.5)), 1 / 6, 1 / 3)


def relation_offset(relation: str, comps: Components) -> np.ndarray:
    """``Δ[i, j]``: how far component i lies on the wrong side of component j along the relation's
    axis (negative: on the side the relation asks for)."""
    if relation in ("above", "below"):
        delta = comps.cy[:, None] - comps.cy[None, :]
    else:
        delta = comps.cx[:, None] - comps.cx[None, :]
    return delta if relation in ("above", "left_of") else -delta


def clean_score(spec: PromptSpec, ev: Evidence) -> float:
    """``1 − max(0, M − N)/(N + 1)``: no credit lost until there are more objects than requested."""
    objects = float((ev.objectness * ev.any_colour).sum())
    return count_score(max(objects, spec.num_instances), spec.num_instances)


def criteria_scores(spec: PromptSpec, ev: Evidence) -> dict[str, float | None]:
    """Each criterion in [0, 1], averaged over the groups it applies to; None where it does not apply."""
    presence, colour, count, position = [], [], [], []
    matches = [ev.match(obj) for obj in spec.objects]
    for obj, w in zip(spec.objects, matches):
        shape_any = ev.objectness * ev.shape[:, SHAPES.index(obj.shape)] * ev.any_colour
        presence.append(_max(shape_any))
        if obj.colour is not None:
            colour.append(0.5 * _max(ev.objectness * ev.colour_match(obj.colour)) + 0.5 * _max(w))
        count.append(count_score(float(w.sum()), obj.count))
        if obj.position is not None:
            placed = np.sort(w * region_score(obj.position, ev.comps.cx, ev.comps.cy))[::-1]
            position.append(float(np.pad(placed, (0, obj.count))[:obj.count].mean()))
    relation = None
    if spec.relation is not None:
        pair = matches[0][:, None] * matches[1][None, :] * ramp(relation_offset(spec.relation, ev.comps),
                                                                -RELATION_MARGIN, 0.0)
        np.fill_diagonal(pair, 0.0)
        relation = _max(pair)

    def mean(values):
        return float(np.mean(values)) if values else None

    return {"presence": mean(presence), "colour": mean(colour), "count": mean(count),
            "position": mean(position), "relation": relation}

"""The rule-based ``shapes`` reward: does an image show what its shapes prompt asks for?

Over the criteria ``c_1 … c_m`` that apply — presence and count always, colour when a group names
a colour, position when a group names a position, relation when the prompt has one —

    score = (½ · mean_i c_i + ½ · Π_i c_i) · clean

Half the reward pays each criterion on its own (partial credit, a smooth signal for RL), half pays
only for getting everything at once (GenEval's all-or-nothing verdict, made soft); ``clean`` takes
credit away from images with more objects than the prompt asks for (1 while there are none). The
criteria and the soft evidence behind them are defined in :mod:`mixgrpo.shapes.criteria`;
segmentation and components in :mod:`mixgrpo.shapes.segment`. Typical values for "a red circle": a ground-truth
render ≈ 1; a blue circle ⅙ (presence 1, colour ½·0 + ½·0, count 0); a red square ≈ 0.13
(presence ≈ 0.1 — a square is a poor circle, not an impossible one — colour ≈ ½, count ≈ 0.1);
two red circles ⅓ (count ½, clean ½); an empty background 0. For "three red circles", two of
them score ≈ 0.78 (count ⅔).

Inputs are checked before any work: images must be a float tensor ``[B, 3, H, W]`` with
``H, W ≥ 32`` and values in [0, 1] (± :data:`RANGE_TOLERANCE`), without NaN or ±inf, and
``prompts`` a list of ``B`` strings, else :class:`~mixgrpo.errors.ImageInputError`; each prompt must
parse (:func:`~mixgrpo.shapes.prompts.parse_prompt`), else :class:`~mixgrpo.errors.PromptError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import ImageInputError
from .criteria import Evidence, clean_score, criteria_scores
from .prompts import parse_prompt
from .segment import find_components, to_work_resolution

RANGE_TOLERANCE = 1e-3
MIN_SIDE = 32
CRITERIA = ("presence", "colour", "count", "position", "relation")


def check_inputs(images, prompts) -> None:
    """Raise :class:`ImageInputError` for a malformed batch (rules in the module docstring)."""
    if not isinstance(images, torch.Tensor):
        raise ImageInputError(f"expected images as a torch.Tensor [B, 3, H, W], found {type(images).__name__}")
    shape = list(images.shape)
    if images.ndim != 4 or shape[1] != 3:
        hint = ""
        if images.ndim == 3:
            hint = " (add a batch dimension with images[None])"
        elif images.ndim == 4 and shape[-1] == 3:
            hint = " (channels-last? use images.permute(0, 3, 1, 2))"
        raise ImageInputError(f"expected images of shape [B, 3, H, W], found {shape}{hint}")
    if min(shape[-2:]) < MIN_SIDE:
        raise ImageInputError(f"expected images of at least {MIN_SIDE}×{MIN_SIDE} pixels, "
                              f"found {shape[-2]}×{shape[-1]}")
    if not images.is_floating_point():
        raise ImageInputError(f"expected float images in [0, 1], found dtype {images.dtype} "
                              "(convert with images.float() / 255)")
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise ImageInputError(f"expected a list of {images.shape[0]} prompt strings, found {type(prompts).__name__}")
    if len(prompts) != images.shape[0]:
        raise ImageInputError(f"expected one prompt per image: {images.shape[0]} images but {len(prompts)} prompts")
    if images.numel():
        if not torch.isfinite(images).all():
            raise ImageInputError("images contain NaN or infinite values")
        lo, hi = images.min().item(), images.max().item()
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            hint = " (images in [-1, 1]? map them with (x + 1) / 2)" if lo >= -1 - RANGE_TOLERANCE and lo < 0 else ""
            raise ImageInputError(f"expected values in [0, 1], found min {lo:.4g} and max {hi:.4g}{hint}")


@torch.no_grad()
def score_shapes(images: torch.Tensor, prompts: Sequence[str]) -> tuple[torch.Tensor, list[dict]]:
    """Score each image against its prompt: ``(scores float32 [B] in [0, 1], details)``.

    ``details[i]`` holds the prompt's ``category``, every criterion of :data:`CRITERIA` (None where
    it does not apply), the ``clean`` multiplier, ``objects`` (components with objectness > ½) and
    the ``score``.
    """
    check_inputs(images, prompts)
    specs = [parse_prompt(p) for p in prompts]
    work = to_work_resolution(images.detach()).cpu().clamp(0.0, 1.0)  # shrink on the images' device first
    comps = find_components(work)
    scores, details = [], []
    for b, spec in enumerate(specs):
        evidence = Evidence(comps.of_image(b))
        crit = criteria_scores(spec, evidence)
        applicable = [v for v in crit.values() if v is not None]
        clean = clean_score(spec, evidence)
        score = (0.5 * sum(applicable) / len(applicable) + 0.5 * math.prod(applicable)) * clean
        scores.append(score)
        details.append({"category": spec.category, **crit, "clean": clean,
                        "objects": int((evidence.objectness > 0.5).sum()), "score": score})
    return torch.tensor(scores, dtype=torch.float32), details


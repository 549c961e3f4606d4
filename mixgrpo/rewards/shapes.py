"""The embedded rule-based ``shapes`` reward (see :mod:`mixgrpo.shapes.reward`), registered by name."""

from __future__ import annotations

from torch import Tensor

from .base import Reward, RewardResult
from .registry import register


@register("shapes")
class ShapesWorldReward(Reward):
    """Scores in [0, 1] with a per-criterion breakdown; CPU only, ≥ 200 images/s per core."""

    name = "shapes"
    device_needs = "cpu"

    def __init__(self, **_unused):
        from ..shapes import score_shapes

        self._score = score_shapes

    def score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        scores, details = self._score(images.detach().float().cpu(), prompts)
        return RewardResult(scores.float(), details)

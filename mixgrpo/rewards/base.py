"""What every reward offers: a name, a recommended training normalisation, device needs, and a call.

A reward maps images ``[B, 3, H, W]`` in [0, 1] and their ``B`` prompts to a float32 tensor of
``B`` scores. A sample whose scoring failed gets NaN, never a made-up value: the trainer drops it
from its group's advantage statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class RewardResult:
    scores: Tensor                                       # [B] float32, NaN where scoring failed
    details: list[dict] = field(default_factory=list)    # optional per-sample breakdown

    @property
    def failed(self) -> Tensor:
        return torch.isnan(self.scores)


@dataclass(frozen=True)
class Normalization:
    """Recommended training transform ``(score − shift)/scale`` (e.g. PickScore: (s − 18)/8)."""

    shift: float = 0.0
    scale: float = 1.0

    def __call__(self, scores: Tensor) -> Tensor:
        return (scores - self.shift) / self.scale


class Reward:
    """Base class: subclasses set ``name`` and implement :meth:`score`."""

    name: str = "reward"
    normalization: Normalization = Normalization()
    #: "cpu" (cheap, rule-based), "gpu" (a neural scorer that wants an accelerator), or "network"
    device_needs: str = "cpu"

    def score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        raise NotImplementedError

    def __call__(self, images: Tensor, prompts: list[str]) -> RewardResult:
        return self.score(images, list(prompts))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

"""A reward set: the rewards of one spec with their weights, and the one place that combines their scores.

Every consumer (the training loop, the held-out evaluation, ``trainer.eval``, the Reward Scorer node,
the benchmarks) scores through :meth:`RewardSet.score` and reads the combinations from
:class:`RewardScores`:

- the **weighted total** of one image, ``Σ_r w_r·s_r / Σ_r w_r`` on the raw scores (NaN if any
  reward failed on it);
- the **normalised** scores ``(s_r − shift_r)/scale_r`` the trainer turns into advantages;
- the **mean** of each reward over the images that did not fail;
- the **per-category** means of a reward whose details name a category (the shapes world).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor


def weighted_mean(values: dict[str, float], weights: dict[str, float]) -> float:
    """``Σ_r w_r·v_r / Σ_r w_r`` over the rewards ``r`` of ``values``."""
    return sum(weights[name] * value for name, value in values.items()) / sum(weights.values())


@dataclass
class RewardScores:
    """The scores of one batch by every reward of a set (float32, NaN where a reward failed)."""

    raw: dict[str, Tensor]
    details: dict[str, list[dict]]
    weights: dict[str, float]
    normalizations: dict[str, object]

    @classmethod
    def join(cls, parts: list["RewardScores"]) -> "RewardScores":
        """The scores of consecutive batches as one batch's, in order."""
        first = parts[0]
        return cls({name: torch.cat([p.raw[name] for p in parts]) for name in first.raw},
                   {name: [d for p in parts for d in p.details[name]] for name in first.details},
                   first.weights, first.normalizations)

    def total(self) -> Tensor:
        """The weighted total of each image: ``Σ_r w_r·s_r / Σ_r w_r``."""
        weighted = torch.zeros(len(next(iter(self.raw.values()))))
        for name, scores in self.raw.items():
            weighted += self.weights[name] * scores.cpu()
        return weighted / sum(self.weights.values())

    def normalized(self) -> dict[str, Tensor]:
        """Each reward's recommended training normalisation of its scores."""
        return {name: self.normalizations[name](scores) for name, scores in self.raw.items()}

    def means(self) -> dict[str, float]:
        """Each reward's mean over the images it scored (failed images left out)."""
        return {name: float(torch.nanmean(scores)) for name, scores in self.raw.items()}

    def per_category(self, name: str) -> dict[str, float]:
        """Reward ``name``'s mean per category, for rewards whose details name one (else empty)."""
        groups = defaultdict(list)
        for score, detail in zip(self.raw[name].tolist(), self.details[name]):
            if "category" in detail:
                groups[detail["category"]].append(score)
        return {category: sum(values) / len(values) for category, values in sorted(groups.items())}


class RewardSet:
    """``(reward, weight)`` pairs with one :meth:`score`; iterating yields the pairs."""

    def __init__(self, pairs: list[tuple[object, float]]):
        self.pairs = list(pairs)
        self.weights = {reward.name: weight for reward, weight in self.pairs}

    def __iter__(self) -> Iterator[tuple[object, float]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    def score(self, images: Tensor, prompts: list[str]) -> RewardScores:
        raw, details = {}, {}
        for reward, _ in self.pairs:
            result = reward(images, prompts)
            raw[reward.name], details[reward.name] = result.scores.float(), result.details
        return RewardScores(raw, details, self.weights, {reward.name: reward.normalization for reward, _ in self.pairs})

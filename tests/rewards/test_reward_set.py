"""The reward set: one place that weights, normalises and groups rewards' scores, for every consumer."""

import math

import pytest
import torch

from mixgrpo.rewards import Normalization, Reward, RewardResult, RewardSet, weighted_mean

pytestmark = pytest.mark.models


class Fixed(Reward):
    """Scores read off a table (NaN stands for a failed sample), with a category per prompt."""

    def __init__(self, name, scores, normalization=Normalization()):
        self.name, self.scores, self.normalization = name, torch.tensor(scores), normalization

    def score(self, images, prompts):
        return RewardResult(self.scores[:len(images)].clone(), [{"category": p.split()[0]} for p in prompts])


IMAGES = torch.zeros(4, 3, 8, 8)
PROMPTS = ["red one", "red two", "blue one", "blue two"]


def test_weighted_total_normalised_scores_means_and_categories():
    a = Fixed("a", [0.2, 0.4, 0.6, float("nan")], Normalization(shift=0.5, scale=0.25))
    b = Fixed("b", [1.0, 0.0, 0.5, 0.5])
    scores = RewardSet([(a, 1.0), (b, 3.0)]).score(IMAGES, PROMPTS)

    total = scores.total()
    assert total[:3].tolist() == pytest.approx([(0.2 + 3) / 4, 0.4 / 4, (0.6 + 1.5) / 4])
    assert math.isnan(total[3])  # a failed sample stays failed in the total
    assert scores.normalized()["a"][:3].tolist() == pytest.approx([-1.2, -0.4, 0.4])
    assert torch.equal(scores.normalized()["b"], b.scores)  # the identity normalisation
    assert scores.means() == pytest.approx({"a": 0.4, "b": 0.5})  # failed samples left out
    assert scores.per_category("b") == pytest.approx({"blue": 0.5, "red": 0.5})
    assert list(scores.per_category("a")) == ["blue", "red"]  # sorted


def test_weighted_mean_is_the_weighted_average_of_reward_means():
    assert weighted_mean({"a": 0.4, "b": 0.5}, {"a": 1.0, "b": 3.0}) == pytest.approx((0.4 + 1.5) / 4)


def test_a_set_iterates_as_reward_weight_pairs():
    a, b = Fixed("a", [0.0] * 4), Fixed("b", [0.0] * 4)
    rewards = RewardSet([(a, 1.0), (b, 0.5)])
    assert list(rewards) == [(a, 1.0), (b, 0.5)] and len(rewards) == 2
    assert rewards.names == ["a", "b"] and rewards.weights == {"a": 1.0, "b": 0.5}

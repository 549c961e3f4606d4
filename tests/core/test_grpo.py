"""Group advantages, PPO-clip loss and KL (docs/algorithm.md §4)."""

import pytest
import torch

from mixgrpo import group_advantages, group_zscore, kl_to_reference, ppo_clip_loss

pytestmark = pytest.mark.core


def test_zscore_per_group_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    adv = group_zscore(r, group_size=3)
    std = (2 / 3) ** 0.5  # population std of 1, 2, 3
    assert torch.allclose(adv[:3], torch.tensor([-1 / std, 0.0, 1 / std]), atol=1e-6)
    assert torch.equal(adv[3:], torch.zeros(3))  # equal rewards: zero advantage, never NaN


def test_failed_rewards_are_left_out_of_the_group_statistics():
    adv = group_zscore(torch.tensor([1.0, float("nan"), 3.0, 5.0]), group_size=4)
    assert torch.isnan(adv[1])
    std = (8 / 3) ** 0.5  # population std of 1, 3, 5
    assert torch.allclose(adv[[0, 2, 3]], torch.tensor([-2 / std, 0.0, 2 / std]), atol=1e-6)


def test_weighted_advantage_aggregation_and_clamp():
    a = torch.tensor([0.0, 1.0, 0.0, 1.0])
    b = torch.tensor([0.0, 0.0, 0.0, 3.0])
    adv = group_advantages({"a": a, "b": b}, group_size=4, weights={"a": 3.0, "b": 1.0})
    expected = 0.75 * group_zscore(a, 4) + 0.25 * group_zscore(b, 4)
    assert torch.allclose(adv, expected)
    by_reward = group_advantages({"a": a, "b": b}, group_size=4, weights={"a": 3.0, "b": 1.0}, aggregate="reward")
    assert torch.allclose(by_reward, group_zscore(0.75 * a + 0.25 * b, 4))
    spike = torch.tensor([0.0] * 99 + [1.0])  # z-score of the outlier is √99 ≈ 9.95
    assert group_advantages({"r": spike}, group_size=100).max() == 5.0


def test_ppo_loss_on_policy_and_clipping():
    adv = torch.tensor([1.0, -2.0])
    old = torch.tensor([[-1.0, -1.2], [-0.5, -0.7]])
    stats = ppo_clip_loss(old.clone(), old, adv)
    assert stats.loss.item() == pytest.approx(-(1.0 - 2.0) / 2)  # r = 1: −mean(A)
    assert stats.clip_fraction.item() == 0.0 and stats.max_abs_log_ratio.item() == 0.0

    logp = (old + 1e-3).requires_grad_(True)  # r ≈ 1.001, well outside 1 ± 1e-4
    stats = ppo_clip_loss(logp, old, adv)
    stats.loss.backward()
    assert stats.clip_fraction.item() == 1.0
    # A > 0 and r > 1 + ε: clipped, no gradient; A < 0 and r > 1: the unclipped term wins
    assert torch.equal(logp.grad[0], torch.zeros(2))
    assert (logp.grad[1] > 0).all()


def test_kl_to_reference():
    mean, ref = torch.zeros(2, 4), torch.full((2, 4), 0.2)
    assert torch.allclose(kl_to_reference(mean, ref, 0.1), torch.full((2,), 0.04 / 0.02))

"""GRPO objective: group advantages, PPO-clip loss, KL to the reference policy (docs/algorithm.md §4)."""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
from torch import Tensor


def group_zscore(rewards: Tensor, group_size: int, eps: float = 1e-8) -> Tensor:
    """``A = (R − mean_group)/(std_group + eps)`` per group of ``group_size`` consecutive samples.

    NaN rewards (failed samples) are left out of their group's mean and std and get A = NaN, so
    the caller can drop them. A group whose valid rewards are all equal gets A = 0, never NaN.
    The std is the population std (divide by the count of valid samples).
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}.")
    r = rewards.float().reshape(-1, group_size)
    valid = ~torch.isnan(r)
    count = valid.sum(dim=1, keepdim=True).clamp(min=1)
    filled = torch.where(valid, r, torch.zeros_like(r))
    mean = filled.sum(dim=1, keepdim=True) / count
    var = (torch.where(valid, r - mean, torch.zeros_like(r)) ** 2).sum(dim=1, keepdim=True) / count
    adv = (r - mean) / (var.sqrt() + eps)
    return torch.where(valid, adv, torch.full_like(adv, float("nan"))).reshape(-1)


def group_advantages(rewards: Mapping[str, Tensor], group_size: int, weights: Mapping[str, float] | None = None,
                     clip: float = 5.0, aggregate: str = "advantage") -> Tensor:
    """Combine several reward models into one advantage per sample.

    * ``aggregate="advantage"`` (default, the paper's): ``A = Σ_k w_k·zscore(R_k)`` with weights
      normalised to sum to 1.
    * ``aggregate="reward"``: ``A = zscore(Σ_k w_k·R_k)``.

    Then ``A`` is clamped to ``[−clip, clip]``. A sample with any NaN reward gets A = NaN.
    """
    names = list(rewards)
    w = {k: float((weights or {}).get(k, 1.0)) for k in names}
    total = sum(w.values())
    if total <= 0:
        raise ValueError(f"reward weights must sum to a positive number, got {w}.")
    if aggregate == "advantage":
        adv = sum(w[k] / total * group_zscore(rewards[k], group_size) for k in names)
    elif aggregate == "reward":
        adv = group_zscore(sum(w[k] / total * rewards[k].float() for k in names), group_size)
    else:
        raise ValueError(f"aggregate must be 'advantage' or 'reward', got {aggregate!r}.")
    return adv.clamp(-clip, clip)


class PPOStats(NamedTuple):
    loss: Tensor
    clip_fraction: Tensor   # share of (sample, step) terms where clipping was active
    max_abs_log_ratio: Tensor


def ppo_clip_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip_range: float = 1e-4,
                  weights: Tensor | None = None) -> PPOStats:
    """``mean(w · max(−A·r, −A·clip(r, 1 − ε, 1 + ε)))`` with ``r = exp(log p_θ − log p_old)``.

    ``log_prob`` and ``old_log_prob`` are ``[B]`` or ``[B, S]`` (S window steps); ``advantages``
    is ``[B]`` and broadcasts over steps. ``weights`` (``[B]``, detached; default 1) are per-sample
    importance weights: an off-policy batch's truncated ratio to the policy that rolled it out.
    """
    log_ratio = log_prob - old_log_prob.detach()
    ratio = torch.exp(log_ratio)
    shape = (-1, *([1] * (log_ratio.dim() - 1)))
    adv = advantages.detach().reshape(shape)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    terms = torch.maximum(unclipped, clipped)
    loss = (terms if weights is None else weights.detach().reshape(shape) * terms).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return PPOStats(loss, clip_fraction.detach(), log_ratio.detach().abs().max())


def kl_to_reference(mean: Tensor, ref_mean: Tensor, std: Tensor | float) -> Tensor:
    """KL between the policy's and the reference's transition Gaussians (same std τ).

    ``KL = ‖μ_θ − μ_ref‖²/(2τ²)``, averaged over elements, shape ``[B]``.
    """
    d = (mean.float() - ref_mean.float().detach()) ** 2 / (2.0 * torch.as_tensor(std, dtype=torch.float32) ** 2)
    return d.reshape(d.shape[0], -1).mean(dim=1)

"""The window loss: PPO-clip (+ β·KL) over stored transitions, a pure function of the policy and the rows.

A micro-batch trains, for each window transition ``t``, the rows ``R_t`` (its samples; DanceGRPO
picks a subset per sample). Its loss is the mean over every (sample, step) term, which splits by
transition:

    L = Σ_t w_t · L_t,   w_t = |R_t| / Σ_s |R_s|
    L_t = mean_{i ∈ R_t} w_i · max(−A_i·r_i, −A_i·clip(r_i, 1 ± ε)) + β · mean_{i ∈ R_t} KL_i
    r_i = exp(log p_θ(x_{t+1} | x_t) − log p_old),   KL_i = ‖μ_θ − μ_ref‖² / (2τ²)

with ``w_i = 1`` and ``p_old`` the stored log-prob on-policy; an off-policy batch's rows (a cap C
given) take ``p_old = π_prox`` (given, or this forward's own value, detached) and
``w_i = min(π_prox / π_b, C)`` against the stored behaviour log-prob (:mod:`trainer.one_step_off`).

:func:`window_loss` computes ``Σ_t w_t·L_t`` for any set of transitions with **one** policy
forward: the rows of every transition are stacked, each with its own σ_t, and the velocity is split
back per transition. The trainer calls it once per transition (one transition's activations alive
at a time: what FLUX-size models need) or once for all of them (one forward and backward: fewer,
larger passes, which pay on small models and CPUs); the gradient is the same either way, to float
rounding (tests/trainer/test_loss.py). What surrounds it (which rows, stand-in rows, weights across
processes, gradient synchronisation) is :meth:`trainer.update.PolicyUpdate.policy_backward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import Tensor

from mixgrpo import ppo_clip_loss
from mixgrpo.algorithm.grpo import kl_to_reference
from mixgrpo.algorithm.rollout import Transition
from mixgrpo.algorithm.steps import gaussian_log_prob, sde_mean_std


@dataclass
class TransitionRows:
    """Some rows of one stored transition, with their conditioning, advantages and share ``weight`` of the loss."""

    transition: Transition   # restricted to the rows
    cond: dict[str, Tensor]
    advantages: Tensor
    weight: float
    importance_cap: float | None = None  # off-policy rows: C (None: on-policy)
    proximal: Tensor | None = None  # off-policy rows: log π_prox (None: this forward's own, before any step)


@dataclass
class PartStats:
    """What one transition's rows showed: the share of clipped terms, the largest |log r|, the mean KL."""

    clip_fraction: float
    max_abs_log_ratio: float
    kl: float
    importance_ratios: Tensor | None = None  # off-policy rows: the untruncated π_prox / π_b


def _stacked_velocity(velocity, parts: list[TransitionRows]) -> list[Tensor]:
    """The velocity of every part's rows from one call, split back per part."""
    x = torch.cat([p.transition.x for p in parts])
    sigma = torch.cat([torch.full((len(p.transition.x),), p.transition.sigma, dtype=torch.float32,
                                  device=x.device) for p in parts])
    cond = {k: torch.cat([p.cond[k] for p in parts]) for k in parts[0].cond}
    return list(velocity(x, sigma, cond).float().split([len(p.transition.x) for p in parts]))


def transition_log_prob(plan, transition: Transition, velocity: Tensor) -> tuple[Tensor, Tensor, Tensor | float]:
    """``(log p(x_{t+1} | x_t), μ, τ)`` of the stored transition's rows under the policy whose velocity is given."""
    mean, std = sde_mean_std(plan.sde_type, transition.x, velocity, transition.sigma, transition.sigma_next, plan.eta)
    return gaussian_log_prob(transition.x_next, mean, std), mean, std


def policy_log_probs(velocity: Callable, transition: Transition, cond: dict[str, Tensor], plan) -> Tensor:
    """``log p_θ`` of every row of ``transition`` under the current policy (no gradient)."""
    with torch.no_grad():
        part = TransitionRows(transition, cond, torch.zeros(len(transition.x)), 1.0)
        return transition_log_prob(plan, transition, _stacked_velocity(velocity, [part])[0])[0]


def window_loss(velocity: Callable, parts: list[TransitionRows], plan, clip_range: float, kl_beta: float = 0.0,
                reference: Callable[[], ContextManager] | None = None) -> tuple[Tensor, list[PartStats]]:
    """``Σ_t w_t · L_t`` over ``parts`` (module docstring), one policy forward for all of them.

    ``reference`` enters the KL's base model (needed when ``kl_beta`` > 0).
    """
    velocities = _stacked_velocity(velocity, parts)
    ref_velocities = None
    if kl_beta > 0:
        with torch.no_grad(), reference():
            ref_velocities = _stacked_velocity(velocity, parts)
    total, stats = 0.0, []
    for k, (part, v) in enumerate(zip(parts, velocities)):
        t = part.transition
        log_prob, mean, std = transition_log_prob(plan, t, v)
        old, weights, ratios = t.log_prob, None, None
        if part.importance_cap is not None:  # off-policy: the ratio against π_prox, weighted by π_prox / π_b
            old = log_prob.detach() if part.proximal is None else part.proximal.to(mean.device)
            ratios = torch.exp(old - t.log_prob)
            weights = ratios.clamp(max=part.importance_cap)
        ppo = ppo_clip_loss(log_prob, old, part.advantages.to(mean.device), clip_range, weights)
        loss, kl = ppo.loss, 0.0
        if ref_velocities is not None:
            ref_mean, _ = sde_mean_std(plan.sde_type, t.x, ref_velocities[k], t.sigma, t.sigma_next, plan.eta)
            kl_mean = kl_to_reference(mean, ref_mean, std).mean()
            loss, kl = loss + kl_beta * kl_mean, float(kl_mean.detach())
        total = total + part.weight * loss
        stats.append(PartStats(float(ppo.clip_fraction), float(ppo.max_abs_log_ratio), kl, ratios))
    return total, stats

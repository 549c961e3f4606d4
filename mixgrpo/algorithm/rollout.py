"""Mixed SDE/ODE trajectories over any velocity function ``v(x, σ, cond)``.

A rollout samples ``G`` groups of ``N`` members. All members of a group start from the group's
single initial noise (docs/algorithm.md §3), so until the first SDE step their trajectories are identical:
with ``share_trunk=True`` the steps before the window run once per group (batch ``G``) and the
batch branches into ``G·N`` at the window start. Members only differ by their SDE noise.

Velocity functions take ``x`` (float32, ``[B, …]``), ``σ`` (float32, ``[B]``) and ``cond`` (a
tensor, a dict/list/tuple of tensors, or None, batched along dim 0) and return ``v`` of the shape of
``x`` in any dtype. All step arithmetic runs in float32 (a bf16 model is cast back).

Noise for the SDE steps comes from ``generator``: one ``torch.Generator`` for the whole batch, or a
list with one generator per member (``G·N`` of them). With a list, a member's trajectory depends on
its own generator only, so it is reproducible alone, in any batch, with or without trunk sharing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from .plan import SamplingPlan
from .steps import denoised, dpm_solver_2m_step, euler_step, gaussian_log_prob, sde_mean_std

VelocityFn = Callable[[Tensor, Tensor, Any], Tensor]
Generators = torch.Generator | Sequence[torch.Generator] | None


class Transition(NamedTuple):
    """One recorded SDE transition of every sample: what the trainer needs to recompute log-probs."""

    step: int            # step index in the plan
    sigma: float         # σ_i
    sigma_next: float    # σ_{i+1}
    x: Tensor            # x_i, [G·N, …] float32
    x_next: Tensor       # x_{i+1}, [G·N, …] float32
    log_prob: Tensor     # old-policy log-prob, [G·N] (mean over elements)


class StepInfo(NamedTuple):
    """Passed to the per-step callback (progress bars, previews, cancel checks)."""

    index: int
    num_steps: int
    sigma: float
    x: Tensor
    denoised: Tensor


@dataclass
class Rollout:
    samples: Tensor                  # final x at σ = 0, [G·N, …], member k of group g at g·N + k
    transitions: list[Transition]    # one per recorded step, in step order
    nfe: int                         # network evaluations per trajectory (old-policy NFE)
    network_evals: int               # rows actually evaluated, all groups together
    num_groups: int
    group_size: int
    previews: list[Tensor] = field(default_factory=list)  # x̂0 per step, if asked for

    @property
    def network_evals_per_group(self) -> float:
        return self.network_evals / self.num_groups


def repeat_batch(obj: Any, repeats: int) -> Any:
    """Repeat every tensor in ``obj`` ``repeats`` times along dim 0, each row kept adjacent."""
    if isinstance(obj, Tensor):
        return obj.repeat_interleave(repeats, dim=0)
    if isinstance(obj, dict):
        return {k: repeat_batch(v, repeats) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(repeat_batch(v, repeats) for v in obj)
    return obj


def draw_noise(shape: Sequence[int], generator: Generators, device: torch.device) -> Tensor:
    """Standard-normal noise of ``shape``; row ``k`` from ``generator[k]`` when given a list."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float32)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]} samples; pass one per sample.")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=torch.float32)
                        for g in generator])


def _sigma_batch(sigma: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device)


@torch.no_grad()
def mixed_rollout(velocity: VelocityFn, noise: Tensor, plan: SamplingPlan, cond: Any = None, group_size: int = 1,
            generator: Generators = None, share_trunk: bool = True, keep_previews: bool = False,
            callback: Callable[[StepInfo], None] | None = None) -> Rollout:
    """Sample ``noise.shape[0]`` groups of ``group_size`` trajectories along ``plan``.

    ``noise``: the initial noise of each group, ``[G, …]``; ``cond``: per-group conditioning.
    Returns the final samples (member-major within each group), the recorded transitions, and
    NFE counts. Without ``share_trunk`` every member runs every step (for comparison only).
    """
    num_groups = noise.shape[0]
    x = noise.float()
    if not share_trunk or group_size == 1:
        branch_at = 0
    elif plan.first_sde_step is None:
        branch_at = plan.num_steps  # all-ODE plan: copy the members at the end
    else:
        branch_at = plan.first_sde_step
    branched = False
    transitions: list[Transition] = []
    previews: list[Tensor] = []
    network_evals = 0
    x0_prev, sigma_prev = None, None
    recorded = set(plan.recorded_steps)

    for i in range(plan.num_steps):
        if not branched and i >= branch_at:
            x, cond = x.repeat_interleave(group_size, dim=0), repeat_batch(cond, group_size)
            x0_prev = None if x0_prev is None else x0_prev.repeat_interleave(group_size, dim=0)
            branched = True
        sigma, sigma_next = plan.sigmas[i], plan.sigmas[i + 1]
        v = velocity(x, _sigma_batch(sigma, x), cond).float()
        network_evals += x.shape[0]
        x0 = denoised(x, v, sigma)
        kind = plan.kind(i)
        if kind == "sde":
            eps = draw_noise(x.shape, generator, x.device)
            mean, std = sde_mean_std(plan.sde_type, x, v, sigma, sigma_next, plan.eta)
            x_next = mean + std * eps
            if i in recorded:
                transitions.append(Transition(i, sigma, sigma_next, x, x_next, gaussian_log_prob(x_next, mean, std)))
        elif kind == "euler":
            x_next = euler_step(x, v, sigma, sigma_next)
        else:
            variant = "heun" if kind == "dpm2m_heun" else "midpoint"
            x_next = dpm_solver_2m_step(x, x0, sigma, sigma_next, x0_prev, sigma_prev, variant)
        if keep_previews:
            previews.append(x0)
        if callback is not None:
            callback(StepInfo(i, plan.num_steps, sigma, x, x0))
        x, x0_prev, sigma_prev = x_next, x0, sigma

    if not branched:  # a plan with no SDE step: members are identical copies
        x = x.repeat_interleave(group_size, dim=0)
    return Rollout(samples=x, transitions=transitions, nfe=plan.nfe, network_evals=network_evals,
                   num_groups=num_groups, group_size=group_size, previews=previews)


def transition_mean_std(velocity: VelocityFn, transition: Transition, cond: Any, plan: SamplingPlan):
    """Mean and std of a stored transition's Gaussian under the policy ``velocity`` (differentiable)."""
    x = transition.x
    v = velocity(x, _sigma_batch(transition.sigma, x), cond).float()
    return sde_mean_std(plan.sde_type, x, v, transition.sigma, transition.sigma_next, plan.eta)


def transition_log_prob(velocity: VelocityFn, transition: Transition, cond: Any, plan: SamplingPlan) -> Tensor:
    """Log-prob of a stored transition under the current policy ``velocity`` (differentiable).

    Uses exactly the arithmetic of :func:`mixed_rollout`, so an unchanged policy reproduces the stored
    ``log_prob``: the on-policy ratio is 1 up to the model's own batch numerics.
    ``cond`` must be batched like ``transition.x`` (``G·N`` rows).
    """
    mean, std = transition_mean_std(velocity, transition, cond, plan)
    return gaussian_log_prob(transition.x_next, mean, std)


def select_rows(transition: Transition, rows: Tensor) -> Transition:
    """The same transition restricted to some samples (a micro-batch)."""
    return transition._replace(x=transition.x[rows], x_next=transition.x_next[rows], log_prob=transition.log_prob[rows])

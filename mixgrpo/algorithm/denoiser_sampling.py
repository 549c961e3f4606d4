"""Mixed SDE/ODE sampling driven by a denoiser ``D(x, σ) = x̂0``, the interface host samplers get.

Hosts such as ComfyUI hand a sampler a denoiser rather than a velocity. For a rectified-flow model
``x_σ = (1 − σ)·x0 + σ·ε`` the two are the same information::

    v(x, σ) = (x − D(x, σ)) / σ          (σ > 0)

so :func:`sample_with_denoiser` wraps ``D`` into a velocity and runs the core
:func:`~mixgrpo.algorithm.rollout.mixed_rollout` on the host's σ grid with a window of SDE steps. An empty
window is plain Euler (or the chosen ODE solver), step for step what the host's own Euler does.
This module knows nothing of any host: ComfyUI's node only adapts its objects to these arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import ScheduleError
from .plan import plan_from_sigmas
from .rollout import StepInfo, mixed_rollout

Denoiser = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class WindowOptions:
    """Where the SDE window sits and how the steps are taken.

    ``start`` / ``size``: window step indices ``start … start + size − 1``; with ``percent`` set
    (0–100), the start is that share of the schedule's steps instead. ``size = 0`` gives ODE sampling.
    ``sde_type``: ``flow`` (MixGRPO's Flow-SDE) or ``dance`` (DanceGRPO's); ``eta``: SDE noise level.
    ``solver``: ODE solver after the window (``euler``, ``dpm2m``, ``dpm2m_heun``); ``compression``:
    Flash r̃ (1.0 = off) — the steps after the window are rebuilt ``r̃`` times as many, which needs
    the grid's ``shift``.
    """

    start: int = 0
    size: int = 4
    eta: float = 0.7
    sde_type: str = "flow"
    solver: str = "euler"
    compression: float = 1.0
    percent: float | None = None

    def window(self, num_steps: int) -> range:
        start = self.start
        if self.percent is not None:
            if not 0 <= self.percent <= 100:
                raise ScheduleError(f"window percent must be in 0–100, got {self.percent}.")
            start = min(int(round(self.percent / 100 * num_steps)), max(0, num_steps - self.size))
        if self.size < 0 or start < 0:
            raise ScheduleError(f"window start and size must be ≥ 0 (got start {start}, size {self.size}).")
        if self.size and start + self.size > num_steps:
            raise ScheduleError(
                f"window steps {start}–{start + self.size - 1} do not fit a {num_steps}-step schedule "
                f"(valid step indices 0–{num_steps - 1}). Lower the window start or size, or raise the steps.")
        return range(start, start + self.size)


def plan_for_sigmas(sigmas: Tensor, options: WindowOptions, shift: float | None = None):
    """The :class:`~mixgrpo.algorithm.plan.SamplingPlan` of ``options`` on a host's σ grid (last σ must be 0)."""
    values = [float(s) for s in sigmas]
    if len(values) < 2:
        raise ScheduleError("a schedule needs at least one step (two sigmas).")
    if values[-1] != 0.0:
        raise ScheduleError(f"the schedule must end at σ = 0 (it ends at {values[-1]:.4g}); "
                            "split schedules are supported only for the part that ends at 0.")
    window = options.window(len(values) - 1)
    return plan_from_sigmas(values, window, mode="mixgrpo", shift=shift, sde_type=options.sde_type,
                            eta=options.eta, solver=options.solver,
                            compression=options.compression if len(window) else 1.0)


@torch.no_grad()
def sample_with_denoiser(denoiser: Denoiser, x: Tensor, sigmas: Tensor, options: WindowOptions, *,
                         seed: int = 0, shift: float | None = None,
                         callback: Callable[[StepInfo], None] | None = None) -> Tensor:
    """Sample the batch ``x`` (already noised to ``sigmas[0]``) down the grid; returns x at σ = 0.

    SDE noise comes from ``torch.Generator(x.device).manual_seed(seed)``: the same seed gives the
    same image. ``callback`` is called once per step (progress, previews, cancel).
    """
    plan = plan_for_sigmas(sigmas, options, shift)
    dtype = x.dtype

    def velocity(xt: Tensor, sigma: Tensor, cond) -> Tensor:
        s = sigma.to(xt.dtype).view(-1, *([1] * (xt.dim() - 1)))
        return (xt - denoiser(xt, sigma).to(xt.dtype)) / s

    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    out = mixed_rollout(velocity, x, plan, None, group_size=1,
                        generator=generator, share_trunk=False, callback=callback)
    return out.samples.to(dtype)

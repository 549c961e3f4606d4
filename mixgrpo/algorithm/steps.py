"""One sampling step each: Euler ODE, Flow-SDE, Dance-SDE, DPM-Solver++; transition log-probs.

Notation (docs/algorithm.md §1–2): the state ``x`` is at noise level ``σ`` and goes to ``σ'`` (``sigma_next``)
with ``Δ = σ' − σ < 0``. The network predicts ``v ≈ ε − x0``, so ``x̂0 = x − σ·v``.
σ arguments are Python floats or tensors broadcastable against ``x`` (per-sample σ: shape
``[B, 1, 1, …]``). Every function computes in float32 whatever dtype the model ran in.
"""

from __future__ import annotations

import math
import torch
from torch import Tensor

from ..errors import ScheduleError

SDE_TYPES = ("flow", "dance")
ODE_SOLVERS = ("euler", "dpm2m", "dpm2m_heun")


def _f32(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float32 else x.float()


def _as_tensor(value: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float32, device=like.device)


def denoised(x: Tensor, v: Tensor, sigma: float | Tensor) -> Tensor:
    """``x̂0 = x − σ·v`` (what ComfyUI calls ``denoised``)."""
    return _f32(x) - _as_tensor(sigma, x) * _f32(v)


def euler_step(x: Tensor, v: Tensor, sigma: float | Tensor, sigma_next: float | Tensor) -> Tensor:
    """ODE (Euler): ``x' = x + Δ·v`` with ``Δ = σ' − σ``."""
    return _f32(x) + (_as_tensor(sigma_next, x) - _as_tensor(sigma, x)) * _f32(v)


def flow_sde_mean_std(x: Tensor, v: Tensor, sigma: float | Tensor, sigma_next: float | Tensor,
                      eta: float = 0.7) -> tuple[Tensor, Tensor]:
    """Flow-SDE (Flow-GRPO form) transition ``N(μ, std²)``.

    ``σ_t = η·sqrt(σ/(1 − σ))`` — on the first step (σ = 1) ``1 − σ'`` replaces ``1 − σ``;
    ``μ = x + [v + σ_t²/(2σ)·(x + (1 − σ)·v)]·Δ``;  ``std = σ_t·sqrt(−Δ)``.

    ``x + (1 − σ)·v`` is the noise estimate ε̂, so the bracket is ``v − ½σ_t²·score`` with
    ``score = −ε̂/σ``: the reverse-time SDE whose marginals equal the ODE's.
    """
    x, v = _f32(x), _f32(v)
    s, s_next = _as_tensor(sigma, x), _as_tensor(sigma_next, x)
    delta = s_next - s
    one_minus = torch.where(s < 1.0, 1.0 - s, 1.0 - s_next)
    sigma_t = eta * torch.sqrt(s / one_minus)
    mean = x + (v + sigma_t**2 / (2.0 * s) * (x + (1.0 - s) * v)) * delta
    return mean, sigma_t * torch.sqrt(-delta)


def dance_sde_mean_std(x: Tensor, v: Tensor, sigma: float | Tensor, sigma_next: float | Tensor,
                       eta: float = 0.3) -> tuple[Tensor, Tensor]:
    """Dance-SDE (DanceGRPO form) transition ``N(μ, std²)``.

    score ``ŝ = −(x − (1 − σ)·x̂0)/σ²``;  ``μ = x + Δ·v − ½η²·ŝ·Δ``;  ``std = η·sqrt(σ − σ')``.
    """
    x, v = _f32(x), _f32(v)
    s, s_next = _as_tensor(sigma, x), _as_tensor(sigma_next, x)
    delta = s_next - s
    score = -(x - (1.0 - s) * (x - s * v)) / s**2
    mean = x + delta * v - 0.5 * eta**2 * score * delta
    return mean, eta * torch.sqrt(-delta)


def sde_mean_std(sde_type: str, x: Tensor, v: Tensor, sigma, sigma_next, eta: float) -> tuple[Tensor, Tensor]:
    """Dispatch to :func:`flow_sde_mean_std` (``"flow"``) or :func:`dance_sde_mean_std` (``"dance"``)."""
    if sde_type == "flow":
        return flow_sde_mean_std(x, v, sigma, sigma_next, eta)
    if sde_type == "dance":
        return dance_sde_mean_std(x, v, sigma, sigma_next, eta)
    raise ScheduleError(f"unknown SDE type {sde_type!r}; choose one of {SDE_TYPES}.")


def gaussian_log_prob(x_next: Tensor, mean: Tensor, std: Tensor | float) -> Tensor:
    """Log density of a stored transition, **averaged** over the elements of each sample.

    ``log p = mean_elements[ −(x' − μ)²/(2τ²) − log τ − ½·log(2π) ]``, shape ``[B]``.
    The per-element mean (not the sum) is what makes the PPO clip range 1e-4 meaningful.
    """
    x_next, mean = _f32(x_next), _f32(mean)
    std = _as_tensor(std, mean) if not isinstance(std, Tensor) else _f32(std)
    elementwise = -((x_next - mean) ** 2) / (2.0 * std**2) - torch.log(std) - 0.5 * math.log(2.0 * math.pi)
    return elementwise.expand_as(mean).reshape(mean.shape[0], -1).mean(dim=1)


# -- DPM-Solver++ in rectified-flow form ------------------------------------------------------
#
# α = 1 − σ, λ = log(α/σ), h = λ' − λ. We write e^{−h} = (σ'·α)/(σ·α') so that σ = 1 (α = 0)
# and σ' = 0 (α' = 1) need no infinities.


def dpm_solver_1_step(x: Tensor, x0: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """DPM-Solver++ 1st order (= DDIM = Euler for rectified flow).

    ``x' = (σ'/σ)·x − α'·(e^{−h} − 1)·x̂0``. At σ' = 0 this returns ``x̂0``.
    """
    alpha, alpha_next = 1.0 - sigma, 1.0 - sigma_next
    exp_neg_h = (sigma_next * alpha) / (sigma * alpha_next)
    return (sigma_next / sigma) * _f32(x) - alpha_next * (exp_neg_h - 1.0) * _f32(x0)


def _lam(sigma: float) -> float:
    return math.log((1.0 - sigma) / sigma)


def dpm_solver_2m_step(x: Tensor, x0: Tensor, sigma: float, sigma_next: float,
                       x0_prev: Tensor | None, sigma_prev: float | None, variant: str = "midpoint") -> Tensor:
    """DPM-Solver++ 2nd-order multistep, using the previous step's ``x̂0``.

    ``r0 = (λ − λ_prev)/h``, ``D0 = x̂0``, ``D1 = (x̂0 − x̂0_prev)/r0``.

    * midpoint: ``x' = (σ'/σ)·x − α'·(e^{−h} − 1)·(D0 + ½·D1)``
    * heun:     ``x' = (σ'/σ)·x − α'·(e^{−h} − 1)·D0 + α'·((e^{−h} − 1)/h + 1)·D1``

    Falls back to 1st order with no usable history (none, or the previous σ was 1, where λ = −∞)
    and on the final step to σ' = 0, which returns ``x̂0``.
    """
    if variant not in ("midpoint", "heun"):
        raise ScheduleError(f"unknown DPM-Solver++ variant {variant!r}; choose 'midpoint' or 'heun'.")
    if x0_prev is None or sigma_prev is None or sigma_prev >= 1.0 or sigma_next <= 0.0 or sigma >= 1.0:
        return dpm_solver_1_step(x, x0, sigma, sigma_next)
    h = _lam(sigma_next) - _lam(sigma)
    r0 = (_lam(sigma) - _lam(sigma_prev)) / h
    d0, d1 = _f32(x0), (_f32(x0) - _f32(x0_prev)) / r0
    alpha_next = 1.0 - sigma_next
    exp_neg_h_minus_1 = math.expm1(-h)
    x = (sigma_next / sigma) * _f32(x)
    if variant == "midpoint":
        return x - alpha_next * exp_neg_h_minus_1 * (d0 + 0.5 * d1)
    return x - alpha_next * exp_neg_h_minus_1 * d0 + alpha_next * (exp_neg_h_minus_1 / h + 1.0) * d1

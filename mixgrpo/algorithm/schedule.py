"""Time grids for rectified-flow sampling: uniform grid, shifts, model timesteps, Flash compression.

Conventions (docs/algorithm.md §1):

* ``x_σ = (1 − σ)·x0 + σ·ε`` with σ ∈ [0, 1]; σ = 1 is pure noise, σ = 0 is data.
* ``t`` is *unshifted* time on a uniform grid, ``σ`` is the shifted value handed to the maths.
* A grid of T steps has T + 1 values ``σ_0 = 1 > σ_1 > … > σ_T = 0``; step ``i`` goes σ_i → σ_{i+1}.

Grids are built in float64 and returned as plain Python floats (a list), so that the same
numbers feed the rollout, the trainer and the ComfyUI nodes whatever the model dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ScheduleError


def uniform_times(num_steps: int) -> list[float]:
    """Uniform unshifted times ``t_i = 1 − i/T`` for ``i = 0..T`` (T + 1 values, 1 → 0)."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ScheduleError(f"num_steps must be a positive integer, got {num_steps!r}.")
    return [1.0 - i / num_steps for i in range(num_steps + 1)]


def shift_time(t: float, shift: float) -> float:
    """SD3-style time shift ``σ = s·t / (1 + (s − 1)·t)``.

    ``s > 1`` spends more steps at high noise. ``s = 1`` is the identity. The FLUX
    resolution-dependent shift is the same map with ``s = e^μ`` (see :func:`flux_shift`).
    """
    if shift <= 0:
        raise ScheduleError(f"shift must be > 0, got {shift}.")
    return shift * t / (1.0 + (shift - 1.0) * t)


def unshift_sigma(sigma: float, shift: float) -> float:
    """Inverse of :func:`shift_time`: ``t = σ / (s − (s − 1)·σ)``."""
    if shift <= 0:
        raise ScheduleError(f"shift must be > 0, got {shift}.")
    return sigma / (shift - (shift - 1.0) * sigma)


def flux_mu(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """FLUX's μ, linear in the number of image tokens.

    ``μ = base_shift + (max_shift − base_shift)·(n − base_seq_len)/(max_seq_len − base_seq_len)``,
    e.g. n = 4096 tokens (1024² image, 8× VAE, 2×2 packing) gives μ = 1.15.
    """
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return base_shift + slope * (image_seq_len - base_seq_len)


def flux_shift(image_seq_len: int, **mu_kwargs: float) -> float:
    """The SD3-style shift ``s = e^μ`` equivalent to FLUX's ``e^μ / (e^μ + 1/t − 1)``."""
    return math.exp(flux_mu(image_seq_len, **mu_kwargs))


def image_seq_len(height: int, width: int, vae_scale: int = 8, patch: int = 2) -> int:
    """Number of image tokens of a FLUX-layout model: ``(H/8/2)·(W/8/2)`` by default."""
    return (height // (vae_scale * patch)) * (width // (vae_scale * patch))


def sigma_schedule(num_steps: int, shift: float = 3.0) -> list[float]:
    """Shifted grid ``σ_i = shift_time(1 − i/T, s)``, i = 0..T (paper: T = 25, s = 3)."""
    return [shift_time(t, shift) for t in uniform_times(num_steps)]


def flux_sigma_schedule(num_steps: int, height: int, width: int) -> list[float]:
    """FLUX inference grid: uniform times shifted by the resolution-dependent ``e^μ``."""
    return sigma_schedule(num_steps, flux_shift(image_seq_len(height, width)))


QUANTIZE_LEVELS = 1000


def quantize_sigma(sigma: float | torch.Tensor, levels: int = QUANTIZE_LEVELS) -> float | torch.Tensor:
    """``⌊levels·σ⌋ / levels``, the timestep grid of the official MixGRPO release (``floor(1000σ)/1000``).

    Computed in float64 with a 1e-4 margin, so a σ that is an exact multiple of ``1/levels`` up to
    float32 rounding (0.29 stored as 0.28999999) stays on its level instead of dropping a notch.
    A tensor comes back in its own dtype.
    """
    if isinstance(sigma, torch.Tensor):
        return (torch.floor(sigma.double() * levels + 1e-4) / levels).to(sigma.dtype)
    return math.floor(sigma * levels + 1e-4) / levels


def sigma_to_timestep(sigma: float | torch.Tensor, scale: float = 1000.0,
                      quantize: bool = False) -> float | torch.Tensor:
    """The timestep a model is conditioned on for noise level σ: ``scale·σ``, or ``scale·quantize_sigma(σ)``.

    diffusers' FLUX transformer takes ``σ`` itself (``scale = 1``; it multiplies by 1000 inside);
    SD3 takes ``1000σ``. Rollout and training call this with the same arguments, so the model sees
    exactly the same value.
    """
    return scale * (quantize_sigma(sigma) if quantize else sigma)


def timestep_to_sigma(timestep: float, scale: float = 1000.0) -> float:
    """Inverse of :func:`sigma_to_timestep` (exact without quantisation)."""
    return timestep / scale


@dataclass(frozen=True)
class NFECount:
    """Old-policy network evaluations per trajectory, under two counting conventions.

    * ``actual`` (= the paper's count, and what :mod:`mixgrpo.algorithm.rollout` measures): one evaluation
      per step actually taken, ``(L + 1) + n`` for Flash — steps ``0..L`` plus ``n`` after.
    * ``code``: the official release's arithmetic ``L + n``, one fewer, because it adds the last
      window *index* L rather than the number of steps up to it.
    """

    actual: int
    code: int


def flash_post_window_steps(num_steps: int, last_window_index: int, ratio: float) -> int:
    """Steps after the window under Flash compression: ``n = floor(max((T − L)·r̃, 1))``.

    ``ratio >= 1`` turns compression off and returns the uncompressed count ``T − L − 1``.
    ``n`` never exceeds ``T − L − 1``: compression never adds steps.
    """
    if not 0.0 < ratio:
        raise ScheduleError(f"compression ratio must be in (0, 1] (1 = off), got {ratio}.")
    if not 0 <= last_window_index < num_steps:
        raise ScheduleError(
            f"last window index must lie in [0, {num_steps - 1}] for {num_steps} steps, "
            f"got {last_window_index}."
        )
    remaining = num_steps - last_window_index - 1
    if ratio >= 1.0 or remaining == 0:
        return remaining
    # The epsilon keeps e.g. 0.29·100 = 28.999… from flooring to 28.
    return min(remaining, math.floor(max((num_steps - last_window_index) * ratio, 1.0) + 1e-9))


def flash_nfe(num_steps: int, last_window_index: int, ratio: float) -> NFECount:
    """Old-policy NFE of a Flash rollout whose window ends at step index L (see :class:`NFECount`)."""
    n = flash_post_window_steps(num_steps, last_window_index, ratio)
    return NFECount(actual=last_window_index + 1 + n, code=last_window_index + n)


def compress_after(sigmas: list[float], last_window_index: int, ratio: float, shift: float) -> list[float]:
    """MixGRPO-Flash grid: keep σ_0..σ_{L+1}, then ``n`` evenly spaced steps in unshifted time.

    With L the last window index and ``t_{L+1}`` the unshifted time of σ_{L+1}, the new tail is
    ``t_{L+1}·(1 − j/n)`` for ``j = 1..n`` (ending at 0), shifted by ``s``. Steps before and inside
    the window are unchanged: compressing before the window collapses training (paper Table 12).
    ``shift`` must be the shift the grid was built with, so that unshifting recovers ``t``.
    """
    num_steps = len(sigmas) - 1
    n = flash_post_window_steps(num_steps, last_window_index, ratio)
    if n == num_steps - last_window_index - 1:
        return list(sigmas)
    head = list(sigmas[: last_window_index + 2])
    t_start = unshift_sigma(head[-1], shift)
    tail = [shift_time(t_start * (1.0 - j / n), shift) for j in range(1, n + 1)]
    return head + tail

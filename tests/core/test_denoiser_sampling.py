"""Sampling from a host's denoiser D(x, σ) = x̂0 (what ComfyUI passes a sampler)."""

import pytest
import torch

from mixgrpo.algorithm.denoiser_sampling import WindowOptions, plan_for_sigmas, sample_with_denoiser
from mixgrpo.errors import ScheduleError
from mixgrpo.algorithm.rollout import mixed_rollout
from mixgrpo.algorithm.schedule import sigma_schedule

pytestmark = pytest.mark.core

M, S = 0.7, 0.5  # data x0 ~ N(M, S²): the exact denoiser is known


def gaussian_denoiser(x, sigma):
    s = sigma.view(-1, *([1] * (x.dim() - 1)))
    var = (1 - s) ** 2 * S**2 + s**2
    return M + (1 - s) * S**2 * (x - (1 - s) * M) / var


def test_empty_window_is_step_for_step_euler():
    sigmas = torch.tensor(sigma_schedule(10, shift=3.0))
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = sample_with_denoiser(gaussian_denoiser, x, sigmas, WindowOptions(size=0))
    ref = x.clone()
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):  # the k-diffusion Euler every host ships
        d = (ref - gaussian_denoiser(ref, s.repeat(3))) / s
        ref = ref + d * (s_next - s)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_window_equals_core_rollout_with_the_same_noise():
    sigmas = torch.tensor(sigma_schedule(12, shift=3.0))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    options = WindowOptions(start=3, size=4, eta=0.9)
    ours = sample_with_denoiser(gaussian_denoiser, x, sigmas, options, seed=7)

    def velocity(xt, sigma, cond):
        return (xt - gaussian_denoiser(xt, sigma)) / sigma.view(-1, 1, 1, 1)

    plan = plan_for_sigmas(sigmas, options)
    assert [plan.kind(i) for i in range(12)].count("sde") == 4
    core = mixed_rollout(velocity, x, plan, generator=torch.Generator().manual_seed(7), share_trunk=False)
    assert torch.allclose(ours, core.samples, atol=1e-6)
    again = sample_with_denoiser(gaussian_denoiser, x, sigmas, options, seed=7)
    other = sample_with_denoiser(gaussian_denoiser, x, sigmas, options, seed=8)
    assert torch.equal(ours, again) and not torch.allclose(ours, other)
    ode = sample_with_denoiser(gaussian_denoiser, x, sigmas, WindowOptions(size=0))
    assert (ours - ode).abs().max() > 1e-3  # the window's noise changes the sample


def test_percent_places_the_window_and_flash_cuts_network_evaluations():
    sigmas = torch.tensor(sigma_schedule(20, shift=3.0))
    assert WindowOptions(size=4, percent=50).window(20) == range(10, 14)
    assert WindowOptions(size=4, percent=100).window(20) == range(16, 20)
    calls = []

    def counting(x, sigma):
        calls.append(1)
        return gaussian_denoiser(x, sigma)

    x = torch.randn(1, 4, 8, 8)
    sample_with_denoiser(counting, x, sigmas, WindowOptions(start=0, size=4, solver="dpm2m", compression=0.4),
                         shift=3.0)
    assert len(calls) < 20


def test_bad_windows_and_schedules_are_clear_errors():
    sigmas = torch.tensor(sigma_schedule(10, shift=3.0))
    with pytest.raises(ScheduleError, match="do not fit a 10-step schedule"):
        plan_for_sigmas(sigmas, WindowOptions(start=8, size=4))
    with pytest.raises(ScheduleError, match="percent"):
        plan_for_sigmas(sigmas, WindowOptions(percent=150))
    with pytest.raises(ScheduleError, match="end at σ = 0"):
        plan_for_sigmas(sigmas[:5], WindowOptions(size=0))
    with pytest.raises(ScheduleError, match="shift"):
        plan_for_sigmas(sigmas, WindowOptions(start=0, size=2, compression=0.5))

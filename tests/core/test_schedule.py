"""Time grids, shifts, model timesteps and the Flash-compressed grid."""

import math

import pytest

from mixgrpo import ScheduleError
from mixgrpo.algorithm.schedule import (
    compress_after,
    flash_nfe,
    flux_mu,
    flux_shift,
    image_seq_len,
    shift_time,
    sigma_schedule,
    sigma_to_timestep,
    timestep_to_sigma,
    uniform_times,
    unshift_sigma,
)

pytestmark = pytest.mark.core


def test_uniform_times_are_one_minus_i_over_T():
    assert uniform_times(4) == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_shift_formula_and_inverse():
    # σ = s·t/(1 + (s − 1)·t): s = 3, t = 0.5 → 1.5/2 = 0.75
    assert shift_time(0.5, 3.0) == pytest.approx(0.75)
    assert shift_time(0.0, 3.0) == 0.0 and shift_time(1.0, 3.0) == 1.0
    for t in (0.1, 0.37, 0.9):
        assert unshift_sigma(shift_time(t, 3.0), 3.0) == pytest.approx(t, abs=1e-12)


def test_sigma_schedule_paper_default():
    sig = sigma_schedule(25, 3.0)
    assert len(sig) == 26 and sig[0] == 1.0 and sig[-1] == 0.0
    assert all(a > b for a, b in zip(sig, sig[1:]))
    assert sig[1] == pytest.approx(3 * 0.96 / (1 + 2 * 0.96))


def test_flux_mu_matches_the_linear_interpolation():
    assert flux_mu(256) == pytest.approx(0.5)
    assert flux_mu(4096) == pytest.approx(1.15)
    assert flux_mu((256 + 4096) // 2) == pytest.approx((0.5 + 1.15) / 2)
    assert image_seq_len(1024, 1024) == 4096 and image_seq_len(512, 768) == 32 * 48


def test_flux_shift_equals_flux_time_shift():
    mu = flux_mu(image_seq_len(720, 720))
    for t in (0.05, 0.3, 0.5, 0.8, 0.99):
        flux_form = math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0))
        assert shift_time(t, flux_shift(image_seq_len(720, 720))) == pytest.approx(flux_form, rel=1e-12)


def test_model_timestep_round_trip_and_quantisation():
    assert sigma_to_timestep(0.98765) == pytest.approx(987.65)
    assert timestep_to_sigma(sigma_to_timestep(0.98765)) == pytest.approx(0.98765)
    assert sigma_to_timestep(0.98765, quantize=True) == 987.0
    assert sigma_to_timestep(0.5, quantize=True) == 500.0  # exact values are not floored down a notch
    assert sigma_to_timestep(1.0, scale=1.0) == 1.0


def test_bad_grids_are_clear_errors():
    with pytest.raises(ScheduleError, match="positive integer"):
        uniform_times(0)
    with pytest.raises(ScheduleError, match="shift"):
        shift_time(0.5, -1.0)
    with pytest.raises(ScheduleError, match="compression ratio"):
        flash_nfe(25, 3, 0.0)


def test_flash_grid_keeps_the_head_and_spaces_the_tail_in_unshifted_time():
    sig = sigma_schedule(25, 3.0)
    L = 3  # frozen window [0, 4)
    flash = compress_after(sig, L, 0.2, 3.0)
    n = math.floor((25 - L) * 0.2)  # 4
    assert len(flash) == (L + 2) + n
    assert flash[: L + 2] == sig[: L + 2]
    t_tail = [unshift_sigma(s, 3.0) for s in flash[L + 1:]]
    t_start = 1 - (L + 1) / 25
    assert t_tail == pytest.approx([t_start * (1 - j / n) for j in range(n + 1)], abs=1e-12)
    assert flash[-1] == 0.0


def test_compression_off_and_never_adds_steps():
    sig = sigma_schedule(25, 3.0)
    assert compress_after(sig, 5, 1.0, 3.0) == sig
    # L = 23 leaves 1 step; (T − L)·r̃ = 2·0.9 = 1.8 → 1 step: the grid stays as it was
    assert compress_after(sig, 23, 0.9, 3.0) == sig


def test_flash_nfe_counting_conventions():
    # Flash*: frozen window at l = 0 (L = 3), r̃ = 0.2: n = floor(22·0.2) = 4.
    assert flash_nfe(25, 3, 0.2).code == 7
    assert flash_nfe(25, 3, 0.2).actual == 8
    # no compression: every step is one evaluation
    assert flash_nfe(25, 3, 1.0).actual == 25

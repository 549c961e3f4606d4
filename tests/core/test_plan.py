"""Sampling plans: roles of the steps per algorithm."""

import pytest
import torch

from mixgrpo import ScheduleError, build_plan, dance_train_steps, plan_from_sigmas, sigma_schedule

pytestmark = pytest.mark.core


def test_mixgrpo_roles():
    plan = build_plan("mixgrpo", num_steps=25, window_start=5, window_size=4)
    assert [plan.kind(i) for i in (4, 5, 8, 9, 24)] == ["euler", "sde", "sde", "euler", "euler"]
    assert plan.recorded_steps == (5, 6, 7, 8) and plan.sigmas == tuple(sigma_schedule(25, 3.0))


def test_flash_uses_dpm_after_the_window_only():
    plan = build_plan("flash", num_steps=25, window_start=5, window_size=4)
    assert plan.kind(4) == "euler" and plan.kind(9) == "dpm2m"
    assert plan.sigmas[:10] == tuple(sigma_schedule(25, 3.0)[:10])
    assert build_plan("flash", window_start=5, solver="dpm2m_heun").kind(9) == "dpm2m_heun"


def test_dancegrpo_is_sde_everywhere_and_records_all_but_the_last_step():
    plan = build_plan("dancegrpo", num_steps=25)
    assert all(plan.kind(i) == "sde" for i in range(25)) and plan.sde_type == "dance" and plan.eta == 0.3
    assert plan.recorded_steps == tuple(range(24))


def test_empty_window_is_plain_ode_with_the_chosen_solver():
    plan = build_plan("mixgrpo", window_size=0, solver="dpm2m")
    assert not plan.sde_steps and plan.kind(0) == "dpm2m"


def test_plan_from_foreign_sigmas():
    plan = plan_from_sigmas([1.0, 0.8, 0.5, 0.2, 0.0], range(1, 3))
    assert plan.kind(0) == "euler" and plan.kind(1) == "sde" and plan.recorded_steps == (1, 2)
    with pytest.raises(ScheduleError, match="decrease strictly"):
        plan_from_sigmas([1.0, 0.5, 0.5, 0.0], range(0, 1))
    with pytest.raises(ScheduleError, match="needs the grid's shift"):
        plan_from_sigmas([1.0, 0.8, 0.5, 0.2, 0.0], range(0, 1), mode="flash")


def test_dance_train_steps():
    picks = dance_train_steps(25, num_samples=12, generator=torch.Generator().manual_seed(0))
    assert all(len(p) == 14 and len(set(p)) == 14 and max(p) <= 23 for p in picks)  # ⌊0.6·24⌋, never step 24
    assert len({tuple(p) for p in picks}) > 1  # each sample draws its own steps
    assert dance_train_steps(25, 3, first_only=4) == [[0, 1, 2, 3]] * 3

"""Mixed SDE/ODE rollouts: end distributions, shared trunk, records, NFE, numerics."""


import pytest
import torch

import mixgrpo.algorithm.rollout as rollout_module
from analytic import GaussianData
from mixgrpo import ScheduleError, WindowSchedule, build_plan, flash_nfe, mixed_rollout, transition_log_prob
from mixgrpo.algorithm.steps import euler_step

pytestmark = pytest.mark.core

DATA = GaussianData(torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([0.5, 1.0, 1.5, 0.8]))


def _end_errors(plan, n=100_000, seed=1):
    gen = torch.Generator().manual_seed(seed)
    out = mixed_rollout(DATA.velocity, torch.randn(n, 4, generator=gen), plan, generator=gen)
    x = out.samples.double()
    return ((x.mean(0) - DATA.m) / DATA.s).abs().max().item(), (x.std(0) / DATA.s - 1).abs().max().item()


PLANS = {
    "ode": dict(mode="mixgrpo", window_size=0),
    "window_first": dict(mode="mixgrpo", window_start=0, window_size=4),
    "window_middle": dict(mode="mixgrpo", window_start=40, window_size=4),
    "all_flow_sde": dict(mode="mixgrpo", window_start=0, window_size=99),
    "flash": dict(mode="flash", window_start=2, window_size=4),
    "dancegrpo": dict(mode="dancegrpo"),
}


@pytest.mark.parametrize("name", list(PLANS))
def test_sampling_reaches_the_target_distribution(name):
    """T = 100 steps, shift 3, n = 10⁵ samples of a 4-D Gaussian target.

    Tolerances: 4 standard errors (mean: 4/√n = 0.013·s; std: 4/√(2n) = 0.009) plus the solver
    bias. Euler's bias on the std is 2.9 % at T = 100 (it halves with T: see the order test), so
    the std must be within 4 %, the mean within 0.02·s.
    """
    mean_err, std_err = _end_errors(build_plan(num_steps=100, **PLANS[name]))
    assert mean_err < 0.02 and std_err < 0.04, (mean_err, std_err)


def test_the_distribution_check_can_fail(monkeypatch):
    """Negative control: an SDE without its score correction misses the target by far."""
    def no_correction(sde_type, x, v, sigma, sigma_next, eta):
        return euler_step(x, v, sigma, sigma_next), eta * torch.sqrt(torch.as_tensor(sigma - sigma_next))
    monkeypatch.setattr(rollout_module, "sde_mean_std", no_correction)
    _, std_err = _end_errors(build_plan(num_steps=100, **PLANS["all_flow_sde"]), n=20_000)
    assert std_err > 0.1


class TinyVelocityNet(torch.nn.Module):
    """A nonlinear conditional velocity field: enough to catch any batching mistake."""

    def __init__(self, dim=6, cond_dim=3):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(dim + cond_dim + 1, 32, generator=gen) * 0.3)
        self.w2 = torch.nn.Parameter(torch.randn(32, dim, generator=gen) * 0.3)

    def forward(self, x, sigma, cond):
        h = torch.cat([x, cond["text"], sigma[:, None]], dim=1) @ self.w1
        return torch.tanh(h) @ self.w2


def _member_generators(groups, group_size, base=100):
    return [torch.Generator().manual_seed(base + k) for k in range(groups * group_size)]


def elementwise_velocity(x, sigma, cond):
    """Row-independent arithmetic only (no matmul), so batching cannot change a single bit."""
    return DATA.velocity(x[:, :4], sigma).repeat(1, 2)[:, :6] + 0.1 * torch.tanh(cond["text"]).repeat(1, 2)


# The MLP's matmul may accumulate in a batch-size-dependent order (measured: ≤ 7.2e-7 apart on
# this CPU, values of order 1), hence 2e-6 for it; the elementwise field must agree bitwise.
VELOCITIES = {"elementwise": (elementwise_velocity, 0.0), "mlp": (TinyVelocityNet(), 2e-6)}


@pytest.mark.parametrize("velocity_name", list(VELOCITIES))
@pytest.mark.parametrize("mode,start", [("mixgrpo", 0), ("mixgrpo", 9), ("flash", 5), ("flash_star", 0),
                                        ("dancegrpo", 0)])
def test_shared_trunk_equals_independent_member_rollouts(mode, start, velocity_name):
    net, atol = VELOCITIES[velocity_name]
    groups, n = 3, 4
    noise = torch.randn(groups, 6, generator=torch.Generator().manual_seed(5))
    cond = {"text": torch.randn(groups, 3, generator=torch.Generator().manual_seed(6))}
    plan = build_plan(mode, num_steps=25, window_start=start, window_size=4)

    def close(a, b):
        return torch.equal(a, b) if atol == 0 else torch.allclose(a, b, atol=atol, rtol=0)

    shared = mixed_rollout(net, noise, plan, cond, group_size=n, generator=_member_generators(groups, n))
    for g in range(groups):
        for k in range(n):
            member = g * n + k
            alone = mixed_rollout(net, noise[g:g + 1], plan, {"text": cond["text"][g:g + 1]}, group_size=1,
                                  generator=_member_generators(groups, n)[member:member + 1])
            assert close(shared.samples[member], alone.samples[0])
            for ts, ta in zip(shared.transitions, alone.transitions):
                assert close(ts.x_next[member], ta.x_next[0])
                assert close(ts.log_prob[member], ta.log_prob[0])

    unshared = mixed_rollout(net, noise, plan, cond, group_size=n, generator=_member_generators(groups, n),
                             share_trunk=False)
    assert close(shared.samples, unshared.samples)
    # fewer network rows: the trunk (steps before l) runs once per group instead of n times
    trunk = 0 if mode == "dancegrpo" else start  # DanceGRPO is SDE from step 0: nothing to share
    assert shared.network_evals == groups * (trunk + n * (plan.nfe - trunk))
    assert unshared.network_evals == groups * n * plan.nfe


def test_group_members_share_the_trunk_then_differ():
    net = TinyVelocityNet()
    plan = build_plan("mixgrpo", num_steps=25, window_start=6, window_size=4)
    out = mixed_rollout(net, torch.randn(1, 6), plan, {"text": torch.randn(1, 3)}, group_size=5,
                  generator=torch.Generator().manual_seed(0))
    first = out.transitions[0].x  # x at the window start: still the shared trunk
    assert torch.equal(first, first[:1].expand_as(first))
    assert len({tuple(s.tolist()) for s in out.samples}) == 5


def test_records_are_the_window_steps_in_order_and_chain():
    net = TinyVelocityNet()
    plan = build_plan("mixgrpo", num_steps=25, window_start=3, window_size=4)
    out = mixed_rollout(net, torch.randn(2, 6), plan, {"text": torch.randn(2, 3)}, group_size=3,
                  generator=torch.Generator().manual_seed(0))
    assert [t.step for t in out.transitions] == [3, 4, 5, 6]
    for t in out.transitions:
        assert (t.sigma, t.sigma_next) == (plan.sigmas[t.step], plan.sigmas[t.step + 1])
        assert t.x.shape == (6, 6) and t.log_prob.shape == (6,) and t.x.dtype == torch.float32
    for a, b in zip(out.transitions, out.transitions[1:]):
        assert torch.equal(a.x_next, b.x)


def test_on_policy_log_ratio_is_below_1e_5():
    """Recomputing the log-prob of a stored transition with the same policy gives ratio 1."""
    net = TinyVelocityNet()
    cond = {"text": torch.randn(2, 3)}
    plan = build_plan("mixgrpo", num_steps=25, window_start=2, window_size=4)
    out = mixed_rollout(net, torch.randn(2, 6), plan, cond, group_size=4, generator=torch.Generator().manual_seed(0))
    batched = rollout_module.repeat_batch(cond, 4)
    for t in out.transitions:
        log_ratio = transition_log_prob(net, t, batched, plan) - t.log_prob
        assert log_ratio.abs().max() < 1e-5


def test_bf16_model_keeps_fp32_step_arithmetic():
    net = TinyVelocityNet().to(torch.bfloat16)

    def velocity(x, sigma, cond):
        return net(x.bfloat16(), sigma.bfloat16(), {"text": cond["text"].bfloat16()})

    plan = build_plan("flash", num_steps=25, window_start=1, window_size=4)
    out = mixed_rollout(velocity, torch.randn(2, 6), plan, {"text": torch.randn(2, 3)}, group_size=2,
                  generator=torch.Generator().manual_seed(0))
    assert out.samples.dtype == torch.float32
    assert all(t.x_next.dtype == torch.float32 and t.log_prob.dtype == torch.float32 for t in out.transitions)


def test_explicit_generator_makes_rollouts_reproducible():
    plan = build_plan("mixgrpo", num_steps=10, window_start=1, window_size=4)
    runs = [mixed_rollout(DATA.velocity, torch.ones(2, 4), plan, group_size=3,
                    generator=torch.Generator().manual_seed(42)).samples for _ in range(2)]
    other = mixed_rollout(DATA.velocity, torch.ones(2, 4), plan, group_size=3,
                    generator=torch.Generator().manual_seed(43)).samples
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], other)


def test_nfe_mixgrpo_is_25_old_and_4_trained():
    plan = build_plan("mixgrpo", num_steps=25, window_start=7, window_size=4)
    out = mixed_rollout(DATA.velocity, torch.randn(1, 4), plan, generator=torch.Generator().manual_seed(0))
    assert plan.nfe == 25 and out.nfe == 25 and out.network_evals == 25
    assert len(out.transitions) == 4


def test_nfe_flash_progressive_averages_15_6_by_the_codes_counting():
    ws = WindowSchedule(num_steps=25, size=4, shift_interval=20)
    code, actual, measured = [], [], []
    for left in ws.lefts(300):
        count = flash_nfe(25, left + 3, 0.4)
        code.append(count.code)
        actual.append(count.actual)
        measured.append(build_plan("flash", num_steps=25, window_start=left, window_size=4).nfe)
    assert sum(code) / 300 == pytest.approx(15.6)
    assert sum(actual) / 300 == pytest.approx(16.6)
    assert measured == actual  # the plan takes exactly the steps the paper's count says


def test_nfe_flash_star_is_7_by_code_8_by_paper():
    plan = build_plan("flash_star", num_steps=25, window_start=0, window_size=4)
    out = mixed_rollout(DATA.velocity, torch.randn(1, 4), plan, generator=torch.Generator().manual_seed(0))
    assert flash_nfe(25, 3, 0.2).code == 7
    assert plan.nfe == out.network_evals == 8
    assert plan.kind(3) == "sde" and plan.kind(4) == "dpm2m" and plan.compressed_from == 4


def test_shared_trunk_saves_network_evaluations():
    plan = build_plan("mixgrpo", num_steps=25, window_start=10, window_size=4)
    out = mixed_rollout(DATA.velocity, torch.randn(2, 4), plan, group_size=12, generator=torch.Generator().manual_seed(0))
    assert out.network_evals_per_group == 10 + 12 * 15 < 12 * 25


def test_bad_windows_are_clear_errors():
    with pytest.raises(ScheduleError, match="does not fit a 25-step schedule"):
        build_plan(num_steps=25, window_start=23, window_size=4)
    with pytest.raises(ScheduleError, match="unknown algorithm"):
        build_plan("grpo")

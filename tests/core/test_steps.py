"""Single steps on analytic Gaussian data: marginals, log-probs, solver orders."""

import math

import pytest
import torch

from analytic import GaussianData
from mixgrpo.algorithm.steps import (
    dance_sde_mean_std,
    denoised,
    dpm_solver_1_step,
    dpm_solver_2m_step,
    euler_step,
    flow_sde_mean_std,
    gaussian_log_prob,
)

pytestmark = pytest.mark.core

DATA = GaussianData(torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([0.5, 1.0, 1.5, 0.8]))


def _velocity(x, sigma):
    return DATA.velocity(x, torch.full((x.shape[0],), sigma))


def test_one_flow_sde_step_keeps_the_exact_marginal():
    """x ~ exact marginal at σ = 0.6, one step to 0.59: the result is the exact marginal at 0.59.

    Tolerance: the Euler–Maruyama bias of one step is O(Δ²) = 1e-4; with n = 10⁶ samples the
    standard error of a std estimate is s/√(2n) ≈ 7e-4·s, so 4 SE ≈ 3e-3 relative. A step that
    drops the score correction inflates the variance by σ_t²·|Δ| ≈ 0.015, i.e. ≥ 1 % of the std,
    which this tolerance rejects (checked below as a negative control).
    """
    sigma, sigma_next, n = 0.6, 0.59, 1_000_000
    gen = torch.Generator().manual_seed(0)
    x = DATA.sample_marginal(n, sigma, gen)
    step_mean, step_std = flow_sde_mean_std(x, _velocity(x, sigma), sigma, sigma_next, eta=0.7)
    x_next = step_mean + step_std * torch.randn(x.shape, generator=gen)
    mean, std = DATA.marginal(sigma_next)
    got = x_next.double()
    assert ((got.mean(0) - mean) / std).abs().max() < 4 / math.sqrt(n) + 1e-4
    assert (got.std(0) / std - 1).abs().max() < 3e-3

    # negative control: the plain Euler drift with the same noise is measurably wrong
    wrong = (euler_step(x, _velocity(x, sigma), sigma, sigma_next) + (x_next - step_mean)).double()
    assert (wrong.std(0) / std - 1).abs().max() > 6e-3


def test_flow_sde_first_step_substitutes_one_minus_next_sigma():
    x = torch.randn(3, 4)
    v = torch.randn(3, 4)
    mean, std = flow_sde_mean_std(x, v, 1.0, 0.96, eta=0.7)
    sigma_t = 0.7 * math.sqrt(1.0 / (1.0 - 0.96))
    assert torch.isfinite(mean).all()
    assert float(std) == pytest.approx(sigma_t * math.sqrt(0.04), rel=1e-6)
    # at σ = 1 the bracket is v + σ_t²/2·x
    assert torch.allclose(mean, x + (v + sigma_t**2 / 2 * x) * (0.96 - 1.0), atol=1e-5)


def test_flow_sde_mean_formula_away_from_one():
    x, v = torch.randn(2, 5), torch.randn(2, 5)
    s, s2, eta = 0.7, 0.65, 0.7
    sigma_t = eta * math.sqrt(s / (1 - s))
    mean, std = flow_sde_mean_std(x, v, s, s2, eta)
    expected = x + (v + sigma_t**2 / (2 * s) * (x + (1 - s) * v)) * (s2 - s)
    assert torch.allclose(mean, expected, atol=1e-6)
    assert float(std) == pytest.approx(sigma_t * math.sqrt(s - s2), rel=1e-6)


def test_dance_sde_formula():
    x, v = torch.randn(2, 5), torch.randn(2, 5)
    s, s2, eta = 0.7, 0.65, 0.3
    x0 = x - s * v
    score = -(x - (1 - s) * x0) / s**2
    mean, std = dance_sde_mean_std(x, v, s, s2, eta)
    assert torch.allclose(mean, x + (s2 - s) * v - 0.5 * eta**2 * score * (s2 - s), atol=1e-6)
    assert float(std) == pytest.approx(eta * math.sqrt(s - s2), rel=1e-6)


def test_dance_sde_step_also_keeps_the_marginal():
    sigma, sigma_next, n = 0.6, 0.59, 1_000_000
    gen = torch.Generator().manual_seed(1)
    x = DATA.sample_marginal(n, sigma, gen)
    mean, std = dance_sde_mean_std(x, _velocity(x, sigma), sigma, sigma_next, eta=0.3)
    got = (mean + std * torch.randn(x.shape, generator=gen)).double()
    m, s = DATA.marginal(sigma_next)
    assert (got.std(0) / s - 1).abs().max() < 3e-3
    assert ((got.mean(0) - m) / s).abs().max() < 4 / math.sqrt(n) + 1e-4


def test_log_prob_is_the_element_mean_of_the_normal_density():
    gen = torch.Generator().manual_seed(2)
    mean = torch.randn(3, 4, 8, 8, generator=gen)
    x_next = mean + 0.3 * torch.randn(mean.shape, generator=gen)
    for std in (torch.tensor(0.3), torch.full((3, 1, 1, 1), 0.3)):
        ours = gaussian_log_prob(x_next, mean, std)
        ref = torch.distributions.Normal(mean, 0.3).log_prob(x_next).reshape(3, -1).mean(1)
        assert ours.shape == (3,)
        assert torch.allclose(ours, ref, atol=1e-6)


def test_dpm_solver_first_order_equals_euler_and_ends_at_x0():
    x, v = torch.randn(4, 3), torch.randn(4, 3)
    for s, s2 in ((1.0, 0.9), (0.6, 0.4), (0.3, 0.0)):
        x0 = denoised(x, v, s)
        assert torch.allclose(dpm_solver_1_step(x, x0, s, s2), euler_step(x, v, s, s2), atol=1e-6)
    x0 = denoised(x, v, 0.2)
    out = dpm_solver_2m_step(x, x0, 0.2, 0.0, torch.randn(4, 3), 0.3)
    assert torch.equal(out, x0)  # the last step is first order: it returns x̂0


def _lambda_uniform_grid(n, hi=0.95, lo=0.02):
    la, lb = math.log((1 - hi) / hi), math.log((1 - lo) / lo)
    return [1 / (1 + math.exp(la + (lb - la) * k / n)) for k in range(n + 1)]


def _solve(method, n):
    sig = _lambda_uniform_grid(n)
    x_start = DATA.sample_marginal(4000, sig[0], torch.Generator().manual_seed(3))
    x, x0_prev, s_prev = x_start, None, None
    for s, s2 in zip(sig, sig[1:]):
        v = _velocity(x, s)
        x0 = denoised(x, v, s)
        x = euler_step(x, v, s, s2) if method == "euler" else dpm_solver_2m_step(x, x0, s, s2, x0_prev, s_prev, method)
        x0_prev, s_prev = x0, s
    (m0, sd0), (m1, sd1) = DATA.marginal(sig[0]), DATA.marginal(sig[-1])
    exact = m1 + sd1 * (x_start.double() - m0) / sd0  # the ODE flow maps quantiles
    return (x.double() - exact).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_empirical_convergence_order(method, order):
    """Error ratio when the step count doubles: 2 for order 1, 4 for order 2.

    Grid uniform in λ = log(α/σ) from σ = 0.95 to 0.02 (the solver's natural variable), exact
    end point from the Gaussian flow map. Measured ratios: Euler 1.97–1.99, midpoint 3.95–3.99,
    Heun 4.04–4.07; the bounds accept ±0.3 on the log2 order.
    """
    errors = [_solve(method, n) for n in (32, 64, 128)]
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(abs(o - order) < 0.3 for o in orders), (errors, orders)

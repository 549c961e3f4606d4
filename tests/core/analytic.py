"""Analytic Gaussian data for tier-1 tests: ``x0 ~ N(m, diag(s²))``, whose flow is known exactly.

With ``x_σ = (1 − σ)·x0 + σ·ε`` and ``a = 1 − σ``:

* marginal ``x_σ ~ N(a·m, a²s² + σ²)`` per dimension;
* exact velocity ``v(x, σ) = E[ε − x0 | x_σ = x] = (σ − a·s²)/(a²s² + σ²)·(x − a·m) − m``;
* the probability-flow ODE maps quantiles, so from ``x_1 = ε`` it reaches ``x_0 = m + s·ε`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor


class GaussianData:
    def __init__(self, mean: Tensor, std: Tensor):
        self.m = mean.double()
        self.s = std.double()

    @property
    def dim(self) -> int:
        return self.m.numel()

    def marginal(self, sigma: float) -> tuple[Tensor, Tensor]:
        a = 1.0 - sigma
        return a * self.m, torch.sqrt(a**2 * self.s**2 + sigma**2)

    def velocity(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        sig = sigma.double().reshape(-1, *([1] * (x.dim() - 1)))
        a = 1.0 - sig
        var = a**2 * self.s**2 + sig**2
        v = (sig - a * self.s**2) / var * (x.double() - a * self.m) - self.m
        return v.to(x.dtype)

    def ode_endpoint(self, eps: Tensor) -> Tensor:
        return (self.m + self.s * eps.double()).float()

    def sample_marginal(self, n: int, sigma: float, generator: torch.Generator) -> Tensor:
        mean, std = self.marginal(sigma)
        return (mean + std * torch.randn(n, self.dim, generator=generator, dtype=torch.float64)).float()


def default_data() -> GaussianData:
    """A 4-dimensional target with distinct means and spreads (none of them 1, so errors show)."""
    return GaussianData(torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([0.3, 1.5, 0.7, 0.1]))

"""Sampling plans: for one rollout, which steps are SDE, ODE or compressed, and which are recorded.

A :class:`SamplingPlan` is plain data (a σ grid plus per-step roles). :func:`build_plan` makes one
from an algorithm name and a window; :func:`plan_from_sigmas` from a σ grid someone else made
(ComfyUI's scheduler). The rollout only reads plans, so every consumer samples the same way.

Each algorithm's SDE type, η, solver and compression come from :mod:`mixgrpo.algorithm.algorithms`.

ODE steps before the window are always Euler on the original grid; an empty window means
plain ODE sampling with the chosen solver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .algorithms import get_algorithm
from ..errors import ScheduleError
from .schedule import compress_after, sigma_schedule
from .steps import ODE_SOLVERS, SDE_TYPES

@dataclass(frozen=True)
class SamplingPlan:
    """A σ grid (``len(sigmas) − 1`` steps) and what each step does.

    ``sde_steps``: stochastic steps; all other steps are deterministic ODE steps.
    ``recorded_steps``: SDE steps whose transitions are returned for training.
    ``solver``: ODE solver after the window (``euler``, ``dpm2m``, ``dpm2m_heun``); steps before
    the window are Euler. A plan with no SDE step (an empty window) is plain ODE sampling with
    ``solver`` throughout.
    """

    sigmas: tuple[float, ...]
    sde_steps: frozenset[int]
    recorded_steps: tuple[int, ...]
    sde_type: str = "flow"
    eta: float = 0.7
    solver: str = "euler"
    compressed_from: int | None = None  # first step index of the compressed tail, if any
    info: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        n = self.num_steps
        if n < 1 or any(a <= b for a, b in zip(self.sigmas, self.sigmas[1:])):
            raise ScheduleError(f"sigmas must decrease strictly and hold ≥ 2 values, got {list(self.sigmas)}.")
        if self.sigmas[-1] != 0.0 or not 0.0 < self.sigmas[0] <= 1.0:
            raise ScheduleError(f"sigmas must start in (0, 1] and end at 0, got {self.sigmas[0]} … {self.sigmas[-1]}.")
        if not set(self.recorded_steps) <= set(self.sde_steps):
            raise ScheduleError("only SDE steps can be recorded for training (ODE steps have no log-prob).")
        if any(not 0 <= i < n for i in self.sde_steps):
            raise ScheduleError(f"SDE step indices must lie in [0, {n - 1}], got {sorted(self.sde_steps)}.")
        if self.sde_type not in SDE_TYPES:
            raise ScheduleError(f"unknown SDE type {self.sde_type!r}; choose one of {SDE_TYPES}.")
        if self.solver not in ODE_SOLVERS:
            raise ScheduleError(f"unknown ODE solver {self.solver!r}; choose one of {ODE_SOLVERS}.")

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def nfe(self) -> int:
        """Network evaluations of one trajectory (one per step)."""
        return self.num_steps

    @property
    def first_sde_step(self) -> int | None:
        return min(self.sde_steps) if self.sde_steps else None

    def kind(self, index: int) -> str:
        """``"sde"``, or the ODE solver used at step ``index``."""
        if index in self.sde_steps:
            return "sde"
        first = self.first_sde_step
        return "euler" if first is not None and index < first else self.solver

    def sigmas_tensor(self) -> torch.Tensor:
        return torch.tensor(self.sigmas, dtype=torch.float32)


def _resolve(mode: str, **given):
    defaults = get_algorithm(mode).plan_defaults()
    return {k: (v if given.get(k) is None else given[k]) for k, v in defaults.items()}


def plan_from_sigmas(sigmas, window: range, *, mode: str = "mixgrpo", shift: float | None = None,
                     sde_type: str | None = None, eta: float | None = None, solver: str | None = None,
                     compression: float | None = None, record: tuple[int, ...] | None = None) -> SamplingPlan:
    """Plan over a given σ grid with SDE steps ``window`` (ignored by DanceGRPO-like algorithms: all steps SDE).

    An empty window (``range(0)``) gives deterministic ODE sampling, e.g. for evaluation.

    Flash compression (``compression < 1``) rebuilds the grid after the window in unshifted time,
    which needs the grid's ``shift``. ``record`` defaults to the window, or for ``dancegrpo`` to
    every step but the last (the transition to σ = 0 is never trained).
    """
    opts = _resolve(mode, sde_type=sde_type, eta=eta, solver=solver, compression=compression)
    everywhere = get_algorithm(mode).sde_everywhere
    sigmas = [float(s) for s in sigmas]
    n = len(sigmas) - 1
    if everywhere:
        sde = range(n)
        default_record = tuple(range(n - 1)) if n > 1 else (0,)
    else:
        if len(window) and (window.start < 0 or window.stop > n):
            raise ScheduleError(
                f"window {list(window)} does not fit a {n}-step schedule (valid step indices 0..{n - 1}). "
                "Lower the window start or size, or raise the number of steps."
            )
        sde = window
        default_record = tuple(window)
    compressed_from = None
    if opts["compression"] < 1.0 and not everywhere and len(window):
        if shift is None:
            raise ScheduleError("Flash compression needs the grid's shift to rebuild it in unshifted time.")
        new = compress_after(sigmas, window.stop - 1, opts["compression"], shift)
        if len(new) != len(sigmas):
            compressed_from = window.stop
        sigmas = new
    return SamplingPlan(
        sigmas=tuple(sigmas), sde_steps=frozenset(sde), recorded_steps=tuple(record or default_record),
        sde_type=opts["sde_type"], eta=float(opts["eta"]), solver=opts["solver"],
        compressed_from=compressed_from, info={"mode": mode, "compression": opts["compression"]},
    )


def build_plan(mode: str = "mixgrpo", num_steps: int = 25, shift: float = 3.0, window_start: int = 0,
               window_size: int = 4, **options) -> SamplingPlan:
    """Plan on the shifted uniform grid (docs/algorithm.md §1) with window ``[window_start, window_start + w)``.

    ``options`` override the mode's defaults: ``sde_type``, ``eta``, ``solver``, ``compression``,
    ``record``.
    """
    window = range(window_start, window_start + window_size)
    return plan_from_sigmas(sigma_schedule(num_steps, shift), window, mode=mode, shift=shift, **options)


def dance_train_steps(num_steps: int, num_samples: int, fraction: float = 0.6,
                      generator: torch.Generator | None = None, first_only: int | None = None) -> list[list[int]]:
    """DanceGRPO's trained steps per sample: a random ``⌊fraction·(T − 1)⌋`` of steps 0..T−2.

    ``T = 25`` gives 14 steps per sample ("25/14"). ``first_only=k`` trains steps 0..k−1 of every
    sample instead ("25/4*").
    """
    trainable = num_steps - 1
    if first_only is not None:
        return [list(range(min(first_only, trainable)))] * num_samples
    count = max(1, int(fraction * trainable))
    picks = []
    for _ in range(num_samples):
        perm = torch.randperm(trainable, generator=generator)[:count]
        picks.append(sorted(perm.tolist()))
    return picks

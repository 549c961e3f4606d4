"""Sliding-window strategies: which steps are SDE (and trained) at each training iteration.

The window is ``W = [l, l + w)``, a run of consecutive step indices; ``l`` is its left boundary.
Iterations are counted from 0 here (the paper counts from 1: its "iterations 1..τ" are our 0..τ−1).

Strategies (docs/algorithm.md §3), each defined by the interval τ(l) that ``l`` is held for and the move:

* ``progressive``: ``l`` starts at ``start`` (0); every τ iterations ``l ← l + stride``.
* ``frozen``: ``l = start`` forever.
* ``random``: a fresh ``l ~ U{0..max_start}`` every iteration, a pure function of (seed, iteration),
  so it is identical on every process and after a resume without any RNG state.
* ``decay`` (linear): ``τ(l) = max(τ_min, int(τ_max·(1 − l/L) + τ_min·l/L))`` with L = ``max_start``.
* ``exp_decay``: ``τ(l) = ceil(τ0·exp(−k·max(0, l − l_0)))``, τ0 = ``shift_interval``, k = 0.1, l_0 = 13.

Each strategy is one :class:`WindowStrategy` in the ``STRATEGIES`` registry; the trainer's choices
and the visualiser node read it, so a new strategy is one :func:`register_strategy` call.

When ``l`` would pass ``max_start`` it rolls back to 0 (``on_overflow="rollback"``, the official
scripts) or stays at ``max_start`` (``"clamp"``).

The cap: the last transition (to σ = 0) is never trained. By default ``max_start = T − 1 − w``, the
largest ``l`` whose whole window avoids that step. The official scripts cap ``l`` at ``T − 3``;
pass ``max_start=T-3`` for that, and windows near the end are then cut short to end at step T − 2.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Callable

from ..errors import ResumeError, ScheduleError
from ..registry import Registry

OVERFLOW_MODES = ("rollback", "clamp")


@dataclass(frozen=True)
class WindowConfig:
    """Everything that determines the sequence of windows. Defaults are the paper's."""

    num_steps: int = 25
    size: int = 4
    strategy: str = "progressive"
    shift_interval: int = 25
    stride: int = 1
    start: int = 0
    max_start: int | None = None
    on_overflow: str = "rollback"
    seed: int = 0
    decay_max: int = 10
    decay_min: int = 1
    exp_decay_rate: float = 0.1
    exp_decay_start: int = 13

    @property
    def cap(self) -> int:
        """The largest left boundary: ``max_start``, or ``T − 1 − w`` when not given."""
        return self.num_steps - 1 - self.size if self.max_start is None else self.max_start

    def validate(self) -> None:
        T, w = self.num_steps, self.size
        get_strategy(self.strategy)
        if self.on_overflow not in OVERFLOW_MODES:
            raise ScheduleError(f"on_overflow must be one of {OVERFLOW_MODES}, got {self.on_overflow!r}.")
        if T < 2:
            raise ScheduleError(f"a window needs at least 2 sampling steps, got num_steps={T}.")
        if not 1 <= w <= T - 1:
            raise ScheduleError(
                f"window size {w} does not fit a {T}-step schedule: it must be between 1 and "
                f"{T - 1} (the last step, to σ = 0, is never trained). Lower --window or raise --steps."
            )
        if not 0 <= self.cap <= T - 2:
            raise ScheduleError(f"max_start must lie in [0, {T - 2}] for {T} steps, got {self.cap}.")
        if not 0 <= self.start <= self.cap:
            raise ScheduleError(f"window start {self.start} must lie in [0, max_start={self.cap}].")
        if self.shift_interval < 1 or self.decay_min < 1 or self.decay_max < self.decay_min:
            raise ScheduleError(
                "intervals must be ≥ 1 and decay_max ≥ decay_min; got "
                f"shift_interval={self.shift_interval}, decay_min={self.decay_min}, decay_max={self.decay_max}."
            )
        if self.stride < 0:
            raise ScheduleError(f"stride must be ≥ 0, got {self.stride}.")


@dataclass(frozen=True)
class WindowStrategy:
    """How the left boundary ``l`` moves over training iterations (one registry entry per strategy).

    ``interval(config, l)`` is τ(l), the iterations ``l`` is held before it moves by the stride;
    ``moves=False`` holds ``l`` forever (after ``pick``, if any); ``pick(config, k)`` draws the
    ``l`` of iteration ``k`` afresh as a pure function (no state to resume).
    """

    name: str
    interval: Callable[[WindowConfig, int], int] = lambda config, left: config.shift_interval
    moves: bool = True
    pick: Callable[[WindowConfig, int], int] | None = None


STRATEGIES = Registry("window strategy")
register_strategy = STRATEGIES.add
strategy_names = STRATEGIES.names
get_strategy = STRATEGIES.lookup


def linear_decay_interval(config: WindowConfig, left: int) -> int:
    """``τ(l) = max(τ_min, int(τ_max·(1 − l/L) + τ_min·l/L))``, L = the cap."""
    L = config.cap
    if L == 0:
        return config.decay_max
    return max(config.decay_min, int(config.decay_max * (1 - left / L) + config.decay_min * left / L))


def exp_decay_interval(config: WindowConfig, left: int) -> int:
    """``τ(l) = ceil(τ0·exp(−k·max(0, l − l_0)))``, τ0 = ``shift_interval``."""
    excess = max(0, left - config.exp_decay_start)
    return max(1, math.ceil(config.shift_interval * math.exp(-config.exp_decay_rate * excess)))


def random_left(config: WindowConfig, iteration: int) -> int:
    """A fresh ``l ~ U{0..cap}``, from (seed, iteration) alone.

    Seeding ``random.Random`` with a string hashes it with SHA-512: the same on every process and
    Python version, independent of torch's global RNG.
    """
    return random.Random(f"mixgrpo-window:{config.seed}:{iteration}").randint(0, config.cap)


register_strategy(WindowStrategy("progressive"))
register_strategy(WindowStrategy("frozen", moves=False))
register_strategy(WindowStrategy("random", moves=False, pick=random_left))
register_strategy(WindowStrategy("decay", interval=linear_decay_interval))
register_strategy(WindowStrategy("exp_decay", interval=exp_decay_interval))


class WindowSchedule:
    """Stateful window sequence for a training run; ``state_dict()`` resumes it exactly.

    >>> ws = WindowSchedule(WindowConfig(num_steps=25, size=4, shift_interval=2))
    >>> [ws.left_at(k) for k in range(5)]
    [0, 0, 1, 1, 2]
    """

    def __init__(self, config: WindowConfig | None = None, **overrides):
        config = config or WindowConfig()
        if overrides:
            config = WindowConfig(**{**asdict(config), **overrides})
        config.validate()
        self.config = config
        self.strategy = get_strategy(config.strategy)
        self.iteration = 0
        self._left = config.start
        self._counter = 0

    # -- the current iteration -------------------------------------------------------------
    @property
    def left(self) -> int:
        """Left boundary ``l`` used by the current iteration."""
        if self.strategy.pick is not None:
            return self.strategy.pick(self.config, self.iteration)
        return self._left

    @property
    def window(self) -> range:
        """Step indices of the current window."""
        return self.window_for(self.left)

    def window_for(self, left: int) -> range:
        """``[l, l + w)`` cut to end before the last step (index T − 1), which is never trained."""
        return range(left, min(left + self.config.size, self.config.num_steps - 1))

    def advance(self) -> None:
        """Finish the current iteration and move to the next one."""
        self.iteration += 1
        if not self.strategy.moves:
            return
        self._counter += 1
        if self._counter >= self.interval(self._left):
            self._counter = 0
            self._left = self._move(self._left)

    # -- the rules ------------------------------------------------------------------------
    def interval(self, left: int) -> int:
        """τ(l): how many iterations the window stays at left boundary ``l``."""
        return self.strategy.interval(self.config, left)

    def _move(self, left: int) -> int:
        cfg = self.config
        moved = left + cfg.stride
        if moved <= cfg.cap:
            return moved
        return 0 if cfg.on_overflow == "rollback" else cfg.cap

    # -- queries that run nothing ---------------------------------------------------------
    def lefts(self, num_iterations: int) -> list[int]:
        """Left boundaries of iterations ``0..num_iterations−1`` of a fresh run (for plots)."""
        replay = WindowSchedule(self.config)
        out = []
        for _ in range(num_iterations):
            out.append(replay.left)
            replay.advance()
        return out

    def left_at(self, iteration: int) -> int:
        """Left boundary of iteration ``iteration`` (0-based) of a fresh run."""
        return self.lefts(iteration + 1)[-1]

    # -- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "iteration": self.iteration,
                "left": self._left, "counter": self._counter}

    def load_state_dict(self, state: dict) -> None:
        saved = WindowConfig(**state["config"])
        if saved != self.config:
            changed = {k: (v, getattr(self.config, k)) for k, v in asdict(saved).items()
                       if getattr(self.config, k) != v}
            raise ResumeError(
                f"the saved window schedule differs from this run's (field: (saved, now)): {changed}. "
                "Resume with the original window settings or start a new run."
            )
        self.iteration = int(state["iteration"])
        self._left = int(state["left"])
        self._counter = int(state["counter"])

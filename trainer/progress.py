"""The run's progress bar: iterations done, the latest figures, and an ETA that counts the evaluations.

tqdm's own estimate knows only iterations; a run also evaluates (before training, every
``eval_every`` iterations and at the end), and on a small model one evaluation costs several
iterations. The ETA shown is ``remaining iterations × mean s/it + remaining evaluations × mean
seconds per evaluation``, from what this run has measured so far.
"""

from __future__ import annotations

import contextlib
import time


def evaluation_points(start: int, iterations: int, eval_every: int) -> list[int]:
    """The iterations after which a run that goes on from ``start`` evaluates (0: before the first)."""
    points = {iterations} | ({0} if start == 0 else set())
    if eval_every:
        points |= set(range(eval_every, iterations, eval_every))
    return sorted(p for p in points if p >= start)


def clock(seconds: float) -> str:
    minutes, second = divmod(int(round(seconds)), 60)
    return f"{minutes}:{second:02d}"


class RunProgress:
    """Drives one tqdm bar (off the main process: none) for iterations ``start..iterations``."""

    def __init__(self, start: int, iterations: int, eval_every: int, desc: str, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=iterations, initial=start, unit="it", desc=desc, disable=not enabled,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        self.pending = evaluation_points(start, iterations, eval_every)
        self.iteration_seconds: list[float] = []
        self.evaluation_seconds: list[float] = []
        self.figures = ""
        self.compile_seconds = 0.0

    def eta(self) -> float | None:
        """Seconds left, or None before an iteration has been measured."""
        if not self.iteration_seconds:
            return None
        left = (self.bar.total - self.bar.n) * sum(self.iteration_seconds) / len(self.iteration_seconds)
        if self.evaluation_seconds:
            left += len(self.pending) * sum(self.evaluation_seconds) / len(self.evaluation_seconds)
        return left

    def _show(self, doing: str = "") -> None:
        eta = self.eta()
        evaluations = len(self.pending)
        parts = [f"eta {clock(eta)}" + (f" with {evaluations} evaluation{'s' * (evaluations != 1)}"
                                        if evaluations else "")] if eta is not None else []
        self.bar.set_postfix_str(", ".join([doing] * bool(doing) + parts + [self.figures] * bool(self.figures)))

    @contextlib.contextmanager
    def evaluation(self, iteration: int, samples: int):
        """Around the held-out evaluation after ``iteration`` iterations (``samples`` images)."""
        self._show(f"evaluating {samples} held-out samples")
        started = time.perf_counter()
        yield
        self.evaluation_seconds.append(time.perf_counter() - started)
        if iteration in self.pending:
            self.pending.remove(iteration)
        self._show()

    def iteration_done(self, record: dict) -> None:
        """Count the iteration; its compile time (``compile_s``, --compile) is shown apart and left out of s/it."""
        compiling = record.get("compile_s", 0.0)
        self.compile_seconds += compiling
        seconds = record["seconds"] - compiling
        self.iteration_seconds.append(seconds)
        self.figures = f"reward={record['reward_mean']:.3f}, window={record['window_start']}, s/it={seconds:.1f}"
        if self.compile_seconds:
            self.figures += f", compiled in {self.compile_seconds:.0f}s"
        self.bar.update(1)
        self._show()

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, *exc) -> None:  # the bar closes before any message the run ends with
        self.close()

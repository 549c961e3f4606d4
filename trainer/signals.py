"""Ctrl-C and SIGTERM stop a run cleanly: the current iteration finishes, a checkpoint is written.

Cluster schedulers pre-empt a job with SIGTERM, a user stops one with Ctrl-C (SIGINT). Either sets
a flag; the loop looks at it after each iteration, writes a checkpoint there (atomically, like
every checkpoint), prints ``interrupted at iteration N; resume with: python -m trainer.run --resume
<run>`` and exits with 128 + the signal (130 for SIGINT, 143 for SIGTERM). The iteration in
flight is finished rather than abandoned, so the resumed run repeats the uninterrupted one exactly.

A second signal exits at once, without a checkpoint. Launchers forward a Ctrl-C to their workers
(``torchrun`` and ``accelerate launch`` send SIGTERM right after the terminal's SIGINT), so a
second signal within :data:`SAME_REQUEST_S` of the first counts as the same request.

Under several processes each rank may see the signal at another time, or only one rank may see it:
the ranks agree with one collective after every iteration (:meth:`StopRequest.agreed`), so all of
them stop at the same iteration and none waits for a peer that left.

**A grace period** (``--stop-grace S``): a scheduler that pre-empts a job sends SIGTERM and kills it
``S`` seconds later (SLURM: the lead time of ``--signal``; ``torchrun`` and ``accelerate launch``: 30 s
after forwarding it). When the rest of the iteration in flight plus a checkpoint would not fit in what
is left of ``S``, the iteration is abandoned at its next safe point, before its update changes any
weight, and the checkpoint is of its start: the resumed run repeats it and still equals the
uninterrupted one. The rest is estimated from the mean of the iterations so far and the last
checkpoint's seconds (unknown before the first: abandon). The ranks agree at each safe point.
"""

from __future__ import annotations

import os
import signal
import sys
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAME_REQUEST_S = 2.0


class RunInterrupted(SystemExit):
    """The run stopped on a signal after its checkpoint; the exit status is 128 + the signal."""


class IterationAbandoned(Exception):
    """The iteration in flight was dropped at a safe point: the stop request's grace period leaves no time for it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """Catches SIGINT / SIGTERM for the lifetime of a ``with`` block and remembers the first."""

    def __init__(self):
        self.signum: int | None = None
        self.received_at = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            if time.monotonic() - self.received_at < SAME_REQUEST_S:
                return
            print(f"\n{name} again: exiting now, without a checkpoint", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signum, self.received_at = signum, time.monotonic()
        print(f"\n{name}: finishing this iteration, then writing a checkpoint (send it again to exit at once)",
              file=sys.stderr, flush=True)

    def agreed(self, processes) -> int | None:
        """The signal every rank stops on (the largest any rank received), or None to go on."""
        return processes.max_int(self.signum or 0) or None

    def safe_point(self, processes, rest_s: float, grace_s: float) -> None:
        """Inside an iteration, before its update (every rank calls it): raise :class:`IterationAbandoned`
        when a stop was requested and ``rest_s`` (the rest of the iteration and a checkpoint) would not
        finish within what is left of ``grace_s`` since the signal."""
        late = self.signum is not None and rest_s > grace_s - (time.monotonic() - self.received_at)
        signum = processes.max_int(self.signum if late else 0)
        if signum:
            raise IterationAbandoned(signum)

    @staticmethod
    def exit(signum: int, iteration: int, run_dir, announce: bool = True, abandoned: bool = False) -> RunInterrupted:
        """The exception that ends the run, after saying (once, on the main process) how to resume it."""
        if announce:
            dropped = f" (iteration {iteration + 1} dropped before its update: --stop-grace)" if abandoned else ""
            print(f"interrupted at iteration {iteration}{dropped}; resume with: python -m trainer.run --resume "
                  f"{run_dir}", file=sys.stderr, flush=True)
        return RunInterrupted(128 + signum)

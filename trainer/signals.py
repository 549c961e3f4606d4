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

    @staticmethod
    def exit(signum: int, iteration: int, run_dir, announce: bool = True) -> RunInterrupted:
        """The exception that ends the run, after saying (once, on the main process) how to resume it."""
        if announce:
            print(f"interrupted at iteration {iteration}; resume with: python -m trainer.run --resume {run_dir}",
                  file=sys.stderr, flush=True)
        return RunInterrupted(128 + signum)

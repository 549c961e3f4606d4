"""The processes of one run: rank, world size, and the collectives the loop needs (gather, all-reduce, barrier).

``accelerate launch`` sets them up (gloo on CPU, NCCL on GPUs); a plain ``python -m trainer.run`` is
one process. A peer that dies turns every later collective into :class:`ProcessLost`.
"""

from __future__ import annotations

import torch

from mixgrpo.cli import one_line
from mixgrpo.errors import MixGRPOError


class Processes:
    """This process's rank among ``world`` (``accelerate launch`` sets them; 1 process otherwise).

    Samples ``0..G·N−1`` are split into equal contiguous slices, one per process, so a group may
    span processes; rewards are gathered so advantages always see whole groups, and gradients are
    averaged across processes after each backward pass.
    """

    def __init__(self):
        from accelerate import PartialState

        # without CUDA, a multi-process launch must ask for CPU (gloo) explicitly, or each process runs alone
        state = PartialState(cpu=not torch.cuda.is_available())
        self.rank, self.world, self.device = state.process_index, state.num_processes, state.device
        self.is_main = state.is_main_process

    def _collective(self, operation, *args, **kwargs):
        """Run a collective; a peer that died (killed, out of memory) becomes :class:`ProcessLost`.

        Gloo and NCCL report a vanished peer as a ``RuntimeError`` ("Connection closed by peer").
        """
        try:
            return operation(*args, **kwargs)
        except RuntimeError as error:
            raise ProcessLost(f"process {self.rank} of {self.world}: another process of this run stopped "
                              f"({one_line(error)[:200]})") from None

    def my_samples(self, total: int) -> range:
        per = total // self.world
        return range(self.rank * per, (self.rank + 1) * per)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return local
        parts = [torch.empty_like(local) for _ in range(self.world)]
        self._collective(torch.distributed.all_gather, parts, local.contiguous())
        return torch.cat(parts)

    def average_gradients(self, params) -> None:
        if self.world == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            self._collective(torch.distributed.all_reduce, p.grad)
            p.grad /= self.world

    def max_int(self, value: int) -> int:
        """The largest ``value`` over all processes (one all-reduce; every process must call it)."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        self._collective(torch.distributed.all_reduce, tensor, op=torch.distributed.ReduceOp.MAX)
        return int(tensor)

    def barrier(self) -> None:
        if self.world > 1:
            self._collective(torch.distributed.barrier)


class ProcessLost(MixGRPOError, RuntimeError):
    """Another process of a multi-process run died; this one cannot go on alone."""

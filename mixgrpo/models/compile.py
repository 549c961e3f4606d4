"""Regional compilation: each transformer block compiled once with ``torch.compile``, and a clock for it.

A transformer is a stack of a few kinds of identical blocks (FLUX: 19 double, 38 single). Compiling
each block, not the whole model, traces one graph per kind of block and batch shape (the blocks of
one kind share their code, so dynamo reuses the trace with each block's own weights), keeps the
Python loop between blocks, and works the same under gradient checkpointing, LoRA and FSDP2, whose
hooks sit between the blocks. The rollout and the update run the same compiled blocks. The first
call of each shape pays the compile time; :class:`CompileClock` measures it apart from the run.
"""

from __future__ import annotations

import os
import shutil
import time

import torch

from ..errors import MixGRPOError


class CompileUnavailable(MixGRPOError, RuntimeError):
    """``torch.compile`` cannot work here (no C++ compiler on a CPU, no Triton on a GPU, an unsupported Python)."""


def compile_problem(device: str | torch.device) -> str | None:
    """Why ``torch.compile`` cannot work for ``device`` here, or None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version"
    if torch.device(device).type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "torch.compile needs Triton on a GPU (pip install triton)"
        return None
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None and shutil.which("c++") is None:
        return f"torch.compile on a CPU needs a C++ compiler ({compiler} not found; apt-get install g++)"
    return None


def compile_blocks(model, device: str | torch.device, fallback: bool = False) -> int:
    """Compile each block of ``model``'s transformer in place; returns how many were compiled.

    Where compilation cannot work this raises :class:`CompileUnavailable`, or with ``fallback`` warns
    and compiles nothing (the run goes on uncompiled). With ``fallback`` a block whose compilation
    fails later, at its first call, also runs uncompiled (dynamo's ``suppress_errors``).
    """
    problem = compile_problem(device)
    if problem is not None:
        if not fallback:
            raise CompileUnavailable(f"--compile: {problem}. Install it, or drop --compile (or add "
                                     "--compile-fallback to train uncompiled when compiling cannot work).")
        import warnings
        warnings.warn(f"--compile: {problem}; training uncompiled (--compile-fallback).")
        return 0
    if fallback:
        torch._dynamo.config.suppress_errors = True
    blocks = model.shard_units()
    for block in blocks:
        block.compile()
    return len(blocks)


class CompileClock:
    """Seconds spent compiling (dynamo tracing + backend), summed over every compilation since :meth:`start`.

    ``take()`` returns the seconds since the last ``take`` and resets, so each iteration's record can
    say how much of it was compiling.
    """

    def __init__(self):
        self.total = 0.0
        self._pending = 0.0
        self._started: float | None = None
        self._depth = 0

    def _on_start(self, *args) -> None:
        if self._depth == 0:
            self._started = time.perf_counter()
        self._depth += 1

    def _on_end(self, *args) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0 and self._started is not None:
            spent = time.perf_counter() - self._started
            self.total += spent
            self._pending += spent
            self._started = None

    def start(self) -> "CompileClock":
        from torch._dynamo.callback import callback_handler

        callback_handler.register_start_callback(self._on_start)
        callback_handler.register_end_callback(self._on_end)
        return self

    def stop(self) -> None:
        from torch._dynamo.callback import callback_handler

        callback_handler.remove_start_callback(self._on_start)
        callback_handler.remove_end_callback(self._on_end)

    def take(self) -> float:
        spent, self._pending = self._pending, 0.0
        return spent

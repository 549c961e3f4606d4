"""The phases of a run on a GPU, each a place a GPU error can happen, and the one line such an error becomes.

``with phase("rollout"):`` around each stage turns

- a GPU out-of-memory error into :class:`GPUOutOfMemory`, naming the phase and the options that
  lower that phase's memory;
- any other CUDA error (an illegal memory access, a failed kernel) into :class:`GPUError`, naming the
  phase and how to see the failing kernel.

Both print as one ``error:`` line at the command's boundary; ``--debug`` keeps the traceback.
"""

from __future__ import annotations

import contextlib

import torch

from mixgrpo.errors import MixGRPOError

#: what lowers each phase's GPU memory, most effective first
REMEDIES = {
    "load": "a smaller model, --mixed-precision bf16 (frozen weights load in bf16), or --fsdp-offload",
    "rollout": "fewer samples per iteration (--group-size, --prompts-per-iter), --resolution, or --fsdp-offload",
    "decode": "--resolution (the VAE decodes in chunks sized to free memory; other processes on the GPU shrink it)",
    "reward": "fewer samples per iteration (--group-size, --prompts-per-iter) or a lighter reward",
    "update": "--micro-batch (fewer samples per backward pass), --checkpointing full, --resolution, "
              "or --fsdp-offload",
    "evaluation": "fewer --eval-seeds or evaluation prompts, or --resolution",
}


class GPUOutOfMemory(MixGRPOError):
    """The GPU ran out of memory in one phase of the run."""


class GPUError(MixGRPOError):
    """A CUDA error (not out-of-memory) in one phase of the run."""


def _cuda_error_types() -> tuple[type[BaseException], ...]:
    accelerator_error = getattr(torch, "AcceleratorError", None)  # torch ≥ 2.8
    return (accelerator_error,) if accelerator_error is not None else ()


@contextlib.contextmanager
def phase(name: str, device: torch.device | str | None = None):
    """Run one phase; GPU errors inside it leave as one-line :class:`GPUOutOfMemory` / :class:`GPUError`."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        where = f" on {device}" if device is not None else ""
        detail = str(error).split("\n")[0].split(". GPU")[0]
        raise GPUOutOfMemory(f"the GPU ran out of memory during the {name}{where} ({detail}); lower it with "
                             f"{REMEDIES[name]}. --debug shows the traceback.") from error
    except _cuda_error_types() as error:
        message = str(error).split("\n")[0]
        raise GPUError(f"CUDA error during the {name}: {message}. Rerun with CUDA_LAUNCH_BLOCKING=1 and --debug "
                       "to see the failing kernel in the traceback.") from error

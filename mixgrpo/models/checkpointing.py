"""Activation checkpointing of the transformer's blocks: off, full, selective, or picked from free memory.

A block that is checkpointed keeps only its input for the backward pass and runs its forward again
there; one that is not keeps every activation (about ``34·S·h`` bytes per sample in 16 bits,
Korthikanti et al. 2022, ``S`` tokens, ``h`` the width). With ``B`` blocks of which ``k`` are
checkpointed, one transition's activations are about

    micro_batch · ((B − k)·34·S·h + k·2·S·h + 34·S·h)

(the last term: the one block recomputed at a time), and the backward pass runs ``k`` block
forwards again. The modes:

- ``off``: k = 0, the fastest, the most memory;
- ``full``: k = B, every block recomputed;
- ``selective``: every other block (k = ⌈B/2⌉), half the recomputation;
- ``auto``: ``off`` where its activations fit in half the free GPU memory, else ``selective`` where
  those fit, else ``full``; ``off`` on a CPU.

Checkpointing recomputes the same operations on the same inputs, so the gradients are the ones
without it (tests/trainer/test_checkpointing.py).
"""

from __future__ import annotations

import torch

MODES = ("off", "full", "selective", "auto")
#: the share of free GPU memory one transition's activations may take under ``auto``
AUTO_MEMORY_SHARE = 0.5
_MARK = "_mixgrpo_checkpointed"


def activation_bytes(blocks: int, checkpointed: int, tokens: int, hidden: int, micro_batch: int) -> float:
    """One transition's activations in 16 bits (module docstring)."""
    per_block = 34 * tokens * hidden
    return micro_batch * ((blocks - checkpointed) * per_block + checkpointed * 2 * tokens * hidden
                          + (per_block if checkpointed else 0))


def checkpointed_count(mode: str, blocks: int) -> int:
    """How many of ``blocks`` blocks ``mode`` (not ``auto``) recomputes."""
    return {"off": 0, "full": blocks, "selective": (blocks + 1) // 2}[mode]


def resolve_mode(mode: str, blocks: int, tokens: int, hidden: int, micro_batch: int,
                 free_bytes: float | None) -> str:
    """``mode``, with ``auto`` made concrete for ``free_bytes`` of free GPU memory (None: a CPU, ``off``)."""
    if mode not in MODES:
        raise ValueError(f"checkpointing must be one of {', '.join(MODES)}; got {mode!r}")
    if mode != "auto":
        return mode
    if free_bytes is None:
        return "off"
    budget = AUTO_MEMORY_SHARE * free_bytes
    for candidate in ("off", "selective"):
        if activation_bytes(blocks, checkpointed_count(candidate, blocks), tokens, hidden, micro_batch) <= budget:
            return candidate
    return "full"


def _checkpoint_marked(block, *args):
    """diffusers' checkpointing hook: recompute the marked blocks, run the others as they are."""
    if getattr(block, _MARK, False):
        return torch.utils.checkpoint.checkpoint(block.__call__, *args, use_reentrant=False)
    return block(*args)


def apply_checkpointing(adapter, mode: str) -> int:
    """Checkpoint the adapter's transformer blocks as ``mode`` (concrete) says; returns how many are checkpointed."""
    blocks = adapter.shard_units()
    count = checkpointed_count(mode, len(blocks))
    if count == 0:
        adapter.transformer.disable_gradient_checkpointing()
        return 0
    chosen = set(range(0, len(blocks), 2)) if mode == "selective" else set(range(len(blocks)))
    for index, block in enumerate(blocks):
        setattr(block, _MARK, index in chosen)
    adapter.transformer.enable_gradient_checkpointing(gradient_checkpointing_func=_checkpoint_marked)
    return count

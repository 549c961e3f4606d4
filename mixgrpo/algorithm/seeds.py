"""Named random streams: every random draw of a training iteration derives from (seed, iteration, purpose).

A resumed run, or a run split over another number of processes, repeats the same draws because
nothing depends on a global RNG or on the order in which draws were made:

``seed_of(seed, iteration, "sde_noise", member) = fold(seed, iteration, STREAMS["sde_noise"], member)``
with ``fold(a, b, …) = (…((a·P + b)·P + …) mod 2^62``, P = 1 000 003 (a prime).

Held-out evaluation noise has no iteration: the noise of prompt ``i`` with seed ``s`` is seeded
``held_out_seed(i, s) = fold(i, s) = i·P + s``, the same for every model and every batch.

Two streams keep their own, older derivation, because changing it would change every run's
prompts or windows: the prompt order of each epoch (``trainer/data.py``, seeded ``seed·7919 +
epoch``) and the ``random`` window strategy (``mixgrpo/algorithm/windows.py``, a string seed hashed by
``random.Random``). Both are pure functions of (seed, epoch or iteration) as well.
"""

from __future__ import annotations

import torch

PRIME = 1_000_003
STREAMS = {
    "initial_noise": 1,  # one noise per group, shared by its members
    "sde_noise": 2,      # one generator per sample (the window's SDE steps)
    "dance_steps": 3,    # DanceGRPO's trained steps per sample
    "update_order": 4,   # the order in which samples enter the optimizer steps
}


def fold(*parts: int) -> int:
    value = 0
    for part in parts:
        value = (value * PRIME + int(part)) % (2**62)
    return value


def seed_of(seed: int, iteration: int, purpose: str, *parts: int) -> int:
    """The seed of stream ``purpose`` at ``iteration`` (``parts``: e.g. the sample index)."""
    return fold(seed, iteration, STREAMS[purpose], *parts)


def generator(seed: int, iteration: int, purpose: str, *parts: int, device="cpu") -> torch.Generator:
    """A generator seeded for stream ``purpose``."""
    return torch.Generator(device=device).manual_seed(seed_of(seed, iteration, purpose, *parts))


def held_out_seed(prompt_index: int, seed: int) -> int:
    """The seed of held-out prompt ``prompt_index``'s initial noise with evaluation seed ``seed``."""
    return fold(prompt_index, seed)

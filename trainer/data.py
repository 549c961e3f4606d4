"""Training and evaluation prompts, and the seeded order in which training visits them."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import ConfigError


def read_prompt_file(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"prompt file {file} does not exist (one prompt per line).")
    prompts = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(f"prompt file {file} holds no prompt.")
    return prompts


def training_prompts(path: str) -> list[str]:
    if path:
        return read_prompt_file(path)
    from mixgrpo.shapes import train_prompts
    return train_prompts()


def evaluation_prompts(path: str | None, full: bool = False) -> list[str]:
    """The prompts of ``path``; without one, the shapes test split: all 69 with ``full`` (``trainer.eval``),
    else every third (23, spread over every category), which keeps a run's own evaluations cheap."""
    if path:
        return read_prompt_file(path)
    from mixgrpo.shapes import test_prompts
    return test_prompts() if full else test_prompts()[::3]


class PromptSampler:
    """Epochs over the prompts, each in a fresh seeded order; ``cursor`` is the whole state."""

    def __init__(self, count: int, seed: int, cursor: int = 0):
        self.count, self.seed, self.cursor = count, seed, cursor

    def _order(self, epoch: int) -> list[int]:
        return torch.randperm(self.count, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch)).tolist()

    def peek(self, n: int, start: int | None = None) -> list[int]:
        """The ``n`` prompts drawn from position ``start`` (default: the cursor) on, without moving the cursor."""
        start = self.cursor if start is None else start
        orders: dict[int, list[int]] = {}
        out = []
        for position in range(start, start + n):
            epoch = position // self.count
            if epoch not in orders:
                orders[epoch] = self._order(epoch)
            out.append(orders[epoch][position % self.count])
        return out

    def take(self, n: int) -> list[int]:
        out = self.peek(n)
        self.cursor += n
        return out

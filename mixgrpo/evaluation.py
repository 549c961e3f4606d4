"""Held-out evaluation, one path for everyone: fixed-seed ODE sampling, then a reward set's scores.

The noise of prompt ``i`` with seed ``s`` is seeded :func:`mixgrpo.algorithm.seeds.held_out_seed`
``(i, s)``, whatever batch it lands in, so two models (the base and a fine-tuned one, or one model
before and after training) are compared on exactly the same noise. The trainer's evaluations,
``trainer.eval``, the shapes-world evaluation and the benchmarks all sample and score here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from .algorithm import seeds
from .algorithm.plan import build_plan
from .algorithm.rollout import mixed_rollout
from .rewards.reward_set import RewardScores, RewardSet


def initial_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_images(model, prompts: list[str], seeds_per_prompt: Iterable[int], steps: int = 25, shift: float = 3.0,
                  resolution: int = 128, solver: str = "euler", batch: int = 64):
    """Images ``[len(prompts)·len(seeds), 3, H, W]`` in [0, 1], prompt-major, plus the prompt per image."""
    chosen = list(seeds_per_prompt)
    plan = build_plan("mixgrpo", num_steps=steps, shift=shift, window_size=0, solver=solver)
    latent = model.latent_shape(resolution, resolution)
    jobs = [(i, p, s) for i, p in enumerate(prompts) for s in chosen]
    images = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        noise = torch.stack([initial_noise(latent, seeds.held_out_seed(i, s)) for i, _, s in chunk])
        cond = model.encode_prompts([p for _, p, _ in chunk])
        out = mixed_rollout(model.velocity, noise.to(model.device), plan, cond)
        images.append(model.decode(out.samples).cpu())
    return torch.cat(images), [p for _, p, _ in jobs]


@dataclass
class Evaluation:
    """The images of one held-out evaluation (prompt-major), their prompts and their scores."""

    images: torch.Tensor
    prompts: list[str]
    scores: RewardScores

    def report(self) -> dict:
        """What ``eval.json`` keeps: the weighted mean, each reward's mean, the last categorised reward's
        per-category means, and the prompt of each image."""
        per_category = {}
        for name in self.scores.raw:
            per_category = self.scores.per_category(name) or per_category
        return {"per_reward": self.scores.means(), "per_category": per_category,
                "mean": float(torch.nanmean(self.scores.total())), "prompts": self.prompts}


def evaluate(model, prompts: list[str], rewards: RewardSet, seeds_per_prompt: Iterable[int], **sampling) -> Evaluation:
    """Sample every prompt with each fixed seed (plain ODE, ``sampling``: steps, shift, resolution, solver) and score."""
    images, texts = sample_images(model, prompts, seeds_per_prompt, **sampling)
    return Evaluation(images, texts, rewards.score(images, texts))

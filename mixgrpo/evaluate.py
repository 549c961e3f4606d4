"""Held-out evaluation with fixed seeds: sample each prompt with the plain ODE, score, group by category.

Seeds fix the initial noise per (prompt, seed) pair, so two models (the base and a fine-tuned one)
are compared on exactly the same noise.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import torch

from .plan import build_plan
from .rollout import mixed_rollout


def initial_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_images(model, prompts: list[str], seeds: Iterable[int], steps: int = 25, shift: float = 3.0,
                  resolution: int = 128, solver: str = "euler", batch: int = 64):
    """Images ``[len(prompts)·len(seeds), 3, H, W]`` in [0, 1], prompt-major, plus the prompt per image."""
    seeds = list(seeds)
    plan = build_plan("mixgrpo", num_steps=steps, shift=shift, window_size=0, solver=solver)
    latent = model.latent_shape(resolution, resolution)
    jobs = [(i, p, s) for i, p in enumerate(prompts) for s in seeds]
    images = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        # the noise depends on (prompt index, seed) only, never on the batch it lands in
        noise = torch.stack([initial_noise(latent, 1_000_003 * i + s) for i, _, s in chunk])
        cond = model.encode_prompts([p for _, p, _ in chunk])
        out = mixed_rollout(model.velocity, noise.to(model.device), plan, cond)
        images.append(model.decode(out.samples).cpu())
    return torch.cat(images), [p for _, p, _ in jobs]


def evaluate_shapes(model, prompts: list[str], seeds: Iterable[int] = range(4), **sampling) -> dict:
    """Mean shapes reward overall and per category, with the images (for grids)."""
    from .shapes import score_shapes

    images, image_prompts = sample_images(model, prompts, seeds, **sampling)
    scores, details = score_shapes(images, image_prompts)
    by_category = defaultdict(list)
    for score, detail in zip(scores.tolist(), details):
        by_category[detail["category"]].append(score)
    return {
        "mean": float(scores.mean()),
        "per_category": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_category.items())},
        "images_scored": len(image_prompts),
        "scores": scores.tolist(),
        "prompts": image_prompts,
        "images": images,
    }

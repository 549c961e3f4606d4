"""Evaluation on held-out prompts with fixed seeds: mean reward per model and, for shapes, per category."""

from __future__ import annotations

from collections import defaultdict

import torch

from mixgrpo.evaluate import sample_images


def evaluate(model, prompts: list[str], rewards, seeds: int, steps: int, shift: float, resolution: int) -> dict:
    """Sample every prompt with ``seeds`` fixed seeds (plain ODE) and score with every reward."""
    images, texts = sample_images(model, prompts, range(seeds), steps=steps, shift=shift, resolution=resolution)
    report = {"per_reward": {}, "per_category": {}}
    weighted, total = torch.zeros(len(texts)), 0.0
    for reward, weight in rewards:
        result = reward(images, texts)
        report["per_reward"][reward.name] = float(torch.nanmean(result.scores))
        weighted += weight * result.scores.float()
        total += weight
        by_category = defaultdict(list)
        for score, detail in zip(result.scores.tolist(), result.details):
            if "category" in detail:
                by_category[detail["category"]].append(score)
        if by_category:
            report["per_category"] = {k: sum(v) / len(v) for k, v in sorted(by_category.items())}
    report["mean"] = float(torch.nanmean(weighted / total))
    report["images"], report["prompts"] = images, texts
    return report

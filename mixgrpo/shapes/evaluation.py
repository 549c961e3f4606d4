"""The shapes-world evaluation of a model: the core's held-out evaluation with the ``shapes`` reward alone."""

from __future__ import annotations

from typing import Iterable


def evaluate_shapes(model, prompts: list[str], seeds: Iterable[int] = range(4), **sampling) -> dict:
    """Mean shapes reward overall and per category (4 decimals), every score and the images (for grids)."""
    from ..evaluation import evaluate
    from ..rewards import load_rewards

    result = evaluate(model, prompts, load_rewards("shapes"), seeds, **sampling)
    scores = result.scores.raw["shapes"]
    return {
        "mean": float(scores.mean()),
        "per_category": {k: round(v, 4) for k, v in result.scores.per_category("shapes").items()},
        "images_scored": len(result.prompts),
        "scores": scores.tolist(),
        "prompts": result.prompts,
        "images": result.images,
    }

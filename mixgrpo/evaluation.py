"""Held-out evaluation, one path for everyone: fixed-seed ODE sampling, then a reward set's scores.

The noise of prompt ``i`` with seed ``s`` is seeded :func:`mixgrpo.algorithm.seeds.held_out_seed`
``(i, s)``, whatever batch it lands in, so two models (the base and a fine-tuned one, or one model
before and after training) are compared on exactly the same noise. The trainer's evaluations,
``trainer.eval``, the shapes-world evaluation and the benchmarks all sample and score here.
"""

from __future__ import annotations

import math
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
                  resolution: int = 128, solver: str = "euler", batch: int | None = None, part: tuple[int, int] = (0, 1)):
    """Images ``[n, 3, H, W]`` in [0, 1], prompt-major, plus the prompt per image.

    ``part = (k, K)``: the ``k``-th of ``K`` contiguous slices of the ``len(prompts)·len(seeds)`` images
    (several processes split an evaluation). Every part runs as many batches (a part left with none
    samples a discarded stand-in), since sharded models need every process in every model call.
    ``batch``: images per model call; by default 64, fewer where the GPU's free memory holds fewer
    (:meth:`~mixgrpo.models.base.FlowModelAdapter.sampling_batch`).
    """
    chosen = list(seeds_per_prompt)
    plan = build_plan("mixgrpo", num_steps=steps, shift=shift, window_size=0, solver=solver)
    latent = model.latent_shape(resolution, resolution)
    jobs = [(i, p, s) for i, p in enumerate(prompts) for s in chosen]
    index, count = part
    per = math.ceil(len(jobs) / count)
    batch = batch or model.sampling_batch(resolution, resolution)
    mine = jobs[index * per:(index + 1) * per]
    images = []
    for start in range(0, per, batch):
        chunk = mine[start:start + batch]
        stand_in = not chunk
        noise = torch.stack([initial_noise(latent, seeds.held_out_seed(i, s)) for i, _, s in chunk or jobs[:1]])
        cond = model.encode_prompts([p for _, p, _ in chunk or jobs[:1]])
        out = mixed_rollout(model.velocity, noise.to(model.device), plan, cond)
        if not stand_in:
            images.append(model.decode(out.samples).cpu())
    empty = torch.zeros(0, 3, resolution, resolution)
    return (torch.cat(images) if images else empty), [p for _, p, _ in mine]


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
        total = self.scores.total()
        return {"per_reward": self.scores.means(), "per_category": per_category,
                "mean": float(torch.nanmean(total)), "prompts": self.prompts,
                "scores": [round(float(score), 6) for score in total]}


def join_evaluations(parts: list[Evaluation]) -> Evaluation:
    """One evaluation from the consecutive parts several processes sampled and scored (empty parts left out)."""
    parts = [part for part in parts if len(part.prompts)]
    first = parts[0].scores
    raw = {name: torch.cat([part.scores.raw[name].cpu() for part in parts]) for name in first.raw}
    details = {name: [d for part in parts for d in part.scores.details[name]] for name in first.details}
    return Evaluation(torch.cat([part.images for part in parts]), [p for part in parts for p in part.prompts],
                      RewardScores(raw, details, first.weights, first.normalizations))


def evaluate(model, prompts: list[str], rewards: RewardSet, seeds_per_prompt: Iterable[int], **sampling) -> Evaluation:
    """Sample every prompt with each fixed seed (plain ODE, ``sampling``: steps, shift, resolution, solver) and score."""
    images, texts = sample_images(model, prompts, seeds_per_prompt, **sampling)
    return Evaluation(images, texts, rewards.score(images, texts))


@dataclass(frozen=True)
class Rise:
    """The change of the held-out reward between two evaluations on the same prompts and noise."""

    before: float
    after: float
    mean: float  # the rise, averaged over prompts
    standard_error: float
    prompts: int
    seeds: int

    @property
    def beyond_noise(self) -> bool:
        """True when the rise is more than two standard errors from zero."""
        return abs(self.mean) > 2 * self.standard_error

    def describe(self) -> str:
        verdict = "beyond noise" if self.beyond_noise else "within noise"
        return (f"{self.mean:+.3f} ± {self.standard_error:.3f} over {self.prompts} prompts × {self.seeds} seeds "
                f"the training never drew: {verdict}")

    def as_dict(self) -> dict:
        return {"mean": self.mean, "standard_error": self.standard_error, "prompts": self.prompts,
                "seeds": self.seeds, "beyond_noise": self.beyond_noise}


def paired_rise(before: dict, after: dict) -> Rise | None:
    """The rise from ``before`` to ``after``, two :meth:`Evaluation.report` rows of the same images' noise.

    Image ``j`` of both rows had the same prompt and initial noise, so each pair's difference is
    the model's change alone. With ``d_p`` the mean over prompt ``p``'s seeds of ``after − before``
    (failed images left out), the rise is ``d̄ = mean_p d_p`` and its standard error
    ``sd(d_p) / √P``: prompts are the independent units. None when the rows cannot be paired.
    """
    if "scores" not in before or "scores" not in after or before["prompts"] != after["prompts"]:
        return None
    per_prompt: dict[str, list[float]] = {}
    for prompt, old, new in zip(before["prompts"], before["scores"], after["scores"]):
        if math.isfinite(old) and math.isfinite(new):
            per_prompt.setdefault(prompt, []).append(new - old)
    if len(per_prompt) < 2:
        return None
    differences = [sum(d) / len(d) for d in per_prompt.values()]
    mean = sum(differences) / len(differences)
    variance = sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)
    seeds = round(len(before["prompts"]) / len(set(before["prompts"])))
    return Rise(before["mean"], after["mean"], mean, math.sqrt(variance / len(differences)), len(differences), seeds)

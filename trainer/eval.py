"""``python -m trainer.eval runs/<name>``: base vs trained on the held-out prompts, on seeds the run never saw.

The run's own evaluations use seeds ``0 … eval_seeds − 1`` (of 23 test prompts by default); this
scores every test prompt (69) with seeds from ``--first-seed`` (100) on, base and trained on the
same noise, and prints the rise with its standard error (:func:`mixgrpo.evaluation.paired_rise`).

Optionally with hybrid inference (``--hybrid 0.8``): the trained model for the first 80 % of the
steps, the base model (LoRA switched off) for the rest, as the paper evaluates. Writes
``eval.md`` (a table per reward and per category) and ``eval_grid.png`` (base | trained pairs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mixgrpo.cli import add_debug_flag, run_command
from mixgrpo.evaluation import evaluate, paired_rise
from mixgrpo.plots import save_sample_grid
from mixgrpo.run_folder import RunFolder

from .config import ConfigError, saved_config
from .data import evaluation_prompts
from .loop import load_model, spread, with_model_defaults
from .outputs import load_lora_into


def hybrid_velocity(model, trained_until: float):
    """Velocity of the trained model while σ > ``1 − trained_until`` of the way, base model after."""
    def velocity(x, sigma, cond):
        if float(sigma[0]) >= 1.0 - trained_until:  # σ runs 1 → 0: early steps have large σ
            return model.velocity(x, sigma, cond)
        with model.reference():
            return model.velocity(x, sigma, cond)
    return velocity


def table_row(scores) -> dict:
    """``{reward: mean, "reward/category": mean, …}``: one row of the table."""
    row = {}
    for name, mean in scores.means().items():
        row[name] = mean
        row.update({f"{name}/{category}": value for category, value in scores.per_category(name).items()})
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder written by trainer.run")
    parser.add_argument("--seeds", type=int, default=4, help="fixed seeds per prompt")
    parser.add_argument("--first-seed", type=int, default=100,
                        help="first of the seeds (the run's own evaluations use 0, 1, …: keep this above them)")
    parser.add_argument("--hybrid", type=float, default=0.0, help="also evaluate trained-for-the-first-p hybrid")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    from mixgrpo.rewards import load_rewards

    folder = RunFolder(args.run)
    cfg = saved_config(folder.read_config())
    if cfg.full_finetune:
        raise ConfigError("trainer.eval compares a LoRA with its base; for a full fine-tune load "
                          f"{args.run / 'transformer'} in place of the base transformer.")
    if not (folder.lora / "pytorch_lora_weights.safetensors").is_file():
        raise ConfigError(f"{folder.lora} holds no pytorch_lora_weights.safetensors: the run has not finished. "
                          f"Resume it first: python -m trainer.run --resume {args.run}")
    rewards = load_rewards(cfg.reward, options=cfg.reward_options)
    model = load_model(cfg)
    load_lora_into(model, folder.lora)
    prompts = evaluation_prompts(cfg.eval_prompts, full=True)
    sampling = dict(steps=cfg.steps, shift=with_model_defaults(cfg, model).shift, resolution=cfg.resolution)

    class Base:  # the same model with the LoRA switched off
        def __getattr__(self, name):
            return getattr(model, name)

        def velocity(self, x, sigma, cond):
            with model.reference():
                return model.velocity(x, sigma, cond)

    rows, grids, reports = {}, {}, {}
    variants = {"base": Base(), "trained": model}
    if args.hybrid > 0:
        hybrid = Base()
        hybrid.velocity = hybrid_velocity(model, args.hybrid)
        variants[f"hybrid {args.hybrid:.0%}"] = hybrid
    for name, variant in variants.items():
        result = evaluate(variant, prompts, rewards, range(args.first_seed, args.first_seed + args.seeds), **sampling)
        rows[name], grids[name], texts = table_row(result.scores), result.images, result.prompts
        reports[name] = result.report()
    keys = list(rows["base"])
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |" for name, row in rows.items()]
    rise = paired_rise(reports["base"], reports["trained"])
    table = (f"Held-out evaluation of {args.run} ({len(prompts)} prompts × seeds {args.first_seed}–"
             f"{args.first_seed + args.seeds - 1})\n\n" + "\n".join(lines) + "\n"
             + (f"\nTrained − base: {rise.describe()}\n" if rise is not None else ""))
    (args.run / "eval.md").write_text(table)
    picks = spread(len(texts), 16)
    images = torch.stack([grids[v][i] for i in picks for v in ("base", "trained")])
    save_sample_grid(images, [f"{v}: {texts[i]}" for i in picks for v in ("base", "trained")],
                     args.run / "eval_grid.png", columns=8)
    print(table)
    (args.run / "eval_table.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

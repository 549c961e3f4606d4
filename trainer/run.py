"""``python -m trainer.run --window 4``: MixGRPO / Flash / DanceGRPO fine-tuning, defaults on the embedded model.

Writes ``runs/<name>/``: ``config.yaml``, ``metrics.jsonl``, TensorBoard events, ``plots/training.png``,
sample grids in ``samples/``, ``checkpoints/`` (resumable with ``--resume runs/<name>``), and the
result in ``lora/`` (or ``transformer/`` with ``--full-finetune``), plus ``eval.json`` with the
held-out reward before and after.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

from .config import ConfigError, TrainConfig, config_dict, parse_config


ALGO_NAMES = {"mixgrpo": "MixGRPO", "flash": "MixGRPO-Flash", "flash_star": "MixGRPO-Flash*", "dancegrpo": "DanceGRPO"}


def resolve_model_path(name: str) -> str:
    if name == "embedded":
        from mixgrpo.models.embedded import EMBEDDED_DIR
        return str(EMBEDDED_DIR)
    return name


def load_model(cfg: TrainConfig, device: str = "cpu"):
    """The config's model as an adapter: its guidance scale when ``cfg_scale`` is set, else the model's own."""
    from mixgrpo.models import load_flow_model

    guidance = {"cfg_scale": cfg.cfg_scale} if cfg.cfg_scale > 0 else {}
    return load_flow_model(resolve_model_path(cfg.model), device=device, quantize_timesteps=cfg.quantize_timesteps,
                           **guidance)


def setup_run_dir(cfg: TrainConfig) -> tuple[Path, TrainConfig]:
    if cfg.resume:
        run_dir = Path(cfg.resume)
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume {run_dir}: no config.yaml there; pass the folder of an earlier run.")
        resumed = TrainConfig(**{**yaml.safe_load(saved.read_text()), "resume": str(run_dir)})
        return run_dir, resumed
    name = cfg.name or f"{cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.run_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
    return run_dir, cfg


def build(cfg: TrainConfig):
    """Model (with LoRA or full fine-tuning), rewards, prompts and the trainer."""
    from mixgrpo.rewards import load_rewards

    from .data import training_prompts
    from .loop import Trainer

    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else ("cpu" if cfg.device == "auto" else cfg.device)
    rewards = load_rewards(cfg.reward, device=device)  # fail fast on an unknown reward, before loading the model
    model = load_model(cfg, device)
    torch.manual_seed(cfg.seed)
    if cfg.full_finetune:
        model.transformer.requires_grad_(True)
        params = list(model.transformer.parameters())
    else:
        params = model.add_lora(rank=cfg.lora_rank, alpha=cfg.lora_alpha)
    if cfg.gradient_checkpointing:
        model.transformer.enable_gradient_checkpointing()
    if cfg.attention == "xformers":  # validated: CUDA only
        model.transformer.enable_xformers_memory_efficient_attention()
    return Trainer(cfg, model, rewards, training_prompts(cfg.prompts), params)


def evaluate_and_grid(trainer, prompts, run_dir: Path, tag: str, writer=None, iteration: int = 0) -> dict:
    from mixgrpo.plots import save_sample_grid

    from .evaluation import evaluate

    cfg = trainer.cfg
    trainer.model.transformer.eval()
    report = evaluate(trainer.model, prompts, trainer.rewards, cfg.eval_seeds, cfg.steps, cfg.shift, cfg.resolution)
    picks = list(range(0, len(report["prompts"]), max(1, len(report["prompts"]) // 24)))[:24]
    save_sample_grid(report["images"][picks], [report["prompts"][i] for i in picks],
                     run_dir / "samples" / f"{tag}.png", columns=8)
    if writer is not None:
        writer.add_scalar("eval/mean", report["mean"], iteration)
    images = report.pop("images")
    report["iteration"] = iteration
    return report | {"_images": images}


def main(argv=None) -> dict:
    try:
        cfg = parse_config(argv)
    except ConfigError as error:
        sys.exit(f"error: {error}")
    if cfg.model == "embedded":  # the embedded model needs no hub: never ask one
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_dir, cfg = setup_run_dir(cfg)
    return train(cfg, run_dir)


def train(cfg: TrainConfig, run_dir: Path) -> dict:
    from tqdm import tqdm

    from mixgrpo.plots import save_sample_grid
    from mixgrpo.plots import plot_training

    from .checkpoint import checkpoint_dirs, load_checkpoint, save_checkpoint
    from .data import PromptSampler, evaluation_prompts
    from .loop import checkpoint_state, trainable_state
    from .outputs import export_to_comfyui, save_lora, save_transformer

    trainer = build(cfg)
    eval_prompts = evaluation_prompts(cfg.eval_prompts)
    sampler = PromptSampler(len(trainer.prompts), cfg.seed)
    named = trainable_state(trainer.model, trainer.params)
    history, evaluations, start = [], [], 0
    if cfg.resume and checkpoint_dirs(run_dir):
        state = load_checkpoint(checkpoint_dirs(run_dir)[-1], named, trainer.optimizer)
        start, sampler.cursor = state["iteration"], state["prompt_cursor"]
        trainer.windows.load_state_dict(state["windows"])
        history, evaluations = state["history"], state.get("evaluations", [])
        # rows written after that checkpoint belong to the killed attempt: start from the checkpoint's
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        print(f"resumed {run_dir} at iteration {start}", flush=True)
    main_process = trainer.processes.is_main  # only the main process evaluates and writes files
    writer = _tensorboard(run_dir) if main_process else None

    if start == 0 and main_process:
        before = evaluate_and_grid(trainer, eval_prompts, run_dir, "iter-000000", writer, 0)
        evaluations.append({k: v for k, v in before.items() if k != "_images"})
        before_images = before["_images"]
    metrics_file = (run_dir / "metrics.jsonl").open("a") if main_process else None
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=ALGO_NAMES[cfg.algo], unit="it",
               disable=not main_process)
    for iteration in bar:
        record = trainer.iteration(iteration, sampler.take(cfg.prompts_per_iter))
        history.append(record)
        if not main_process:
            continue
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        if writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)):
                    writer.add_scalar(f"train/{key}", value, record["iteration"])
        bar.set_postfix(reward=f"{record['reward_mean']:.3f}", window=record["window_start"],
                        s_it=f"{record['seconds']:.1f}")
        done = iteration + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.iterations:
            report = evaluate_and_grid(trainer, eval_prompts, run_dir, f"iter-{done:06d}", writer, done)
            evaluations.append({k: v for k, v in report.items() if k != "_images"})
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            save_checkpoint(run_dir, done, named, trainer.optimizer,
                            checkpoint_state(trainer, done, sampler.cursor, history) | {"evaluations": evaluations},
                            keep=cfg.keep_checkpoints)
    trainer.processes.barrier()
    if not main_process:
        return {}
    metrics_file.close()

    after = evaluate_and_grid(trainer, eval_prompts, run_dir, f"iter-{cfg.iterations:06d}", writer, cfg.iterations)
    evaluations.append({k: v for k, v in after.items() if k != "_images"})
    plot_training(history, run_dir / "plots" / "training.png", evaluations)
    if start == 0:
        pairs = list(range(0, len(after["prompts"]), max(1, len(after["prompts"]) // 12)))[:12]
        images = torch.stack([im for i in pairs for im in (before_images[i], after["_images"][i])])
        captions = [f"{tag}: {after['prompts'][i]}" for i in pairs for tag in ("before", "after")]
        save_sample_grid(images, captions, run_dir / "samples" / "before_after.png", columns=8)
    result = save_transformer(trainer.model, run_dir / "transformer") if cfg.full_finetune else \
        save_lora(trainer.model, run_dir / "lora", cfg.lora_rank, cfg.lora_alpha)
    if cfg.export_comfyui:
        print(f"exported to {export_to_comfyui(result, Path(cfg.export_comfyui), run_dir.name, cfg.full_finetune)}")
    summary = {"before": evaluations[0]["mean"], "after": evaluations[-1]["mean"],
               "before_per_category": evaluations[0].get("per_category", {}),
               "after_per_category": evaluations[-1].get("per_category", {}),
               "seconds_per_iteration": sum(h["seconds"] for h in history) / max(1, len(history)),
               "run_dir": str(run_dir)}
    (run_dir / "eval.json").write_text(json.dumps({"summary": summary, "evaluations": evaluations}, indent=2))
    if writer is not None:
        writer.close()
    print(f"held-out reward: before {summary['before']:.3f} → after {summary['after']:.3f} "
          f"({summary['after'] - summary['before']:+.3f}); run folder: {run_dir}", flush=True)
    return summary


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard is not installed: no event files (pip install tensorboard)", flush=True)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


if __name__ == "__main__":
    main()

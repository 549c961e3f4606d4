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

from mixgrpo.algorithms import get_algorithm
from mixgrpo.cli import run_command
from mixgrpo.errors import TrainingStopped

from .config import ConfigError, TrainConfig, config_dict, parse_config


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
    return Path(cfg.run_dir) / name, cfg


def write_config(cfg: TrainConfig, run_dir: Path) -> None:
    """A new run's folder and ``config.yaml``, written once everything loaded (a failed start leaves nothing)."""
    if cfg.resume:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))


def build(cfg: TrainConfig):
    """Model (with LoRA or full fine-tuning), rewards, prompts and the trainer."""
    from mixgrpo.rewards import load_rewards

    from .data import training_prompts
    from .loop import Trainer

    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else ("cpu" if cfg.device == "auto" else cfg.device)
    rewards = load_rewards(cfg.reward, options=cfg.reward_options, device=device)  # fail fast on an unknown reward, before loading the model
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
    """Parse, set up the run folder and train; errors propagate (the command's boundary reports them)."""
    cfg = parse_config(argv)
    if cfg.model == "embedded":  # the embedded model needs no hub: never ask one
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_dir, cfg = setup_run_dir(cfg)
    return train(cfg, run_dir)


def train(cfg: TrainConfig, run_dir: Path) -> dict:
    from tqdm import tqdm

    from mixgrpo.plots import save_sample_grid
    from mixgrpo.plots import plot_training

    from .checkpoint import checkpoint_dirs, read_latest_checkpoint, restore_checkpoint, save_checkpoint
    from .data import PromptSampler, evaluation_prompts
    from .loop import ProcessLost, checkpoint_state, trainable_state
    from .outputs import export_to_comfyui, save_lora, save_transformer
    from .signals import StopRequest

    trainer = build(cfg)
    eval_prompts = evaluation_prompts(cfg.eval_prompts)
    if trainer.processes.is_main:
        write_config(cfg, run_dir)
    trainer.processes.barrier()
    sampler = PromptSampler(len(trainer.prompts), cfg.seed)
    named = trainable_state(trainer.model, trainer.params)
    history, evaluations, start = [], [], 0
    saved = read_latest_checkpoint(run_dir, named, trainer.optimizer) if cfg.resume else None
    if saved is not None:
        state = restore_checkpoint(saved, named, trainer.optimizer)
        start, sampler.cursor = state["iteration"], state["prompt_cursor"]
        trainer.windows.load_state_dict(state["windows"])
        history, evaluations = state["history"], state.get("evaluations", [])
        # rows written after that checkpoint belong to the killed attempt: start from the checkpoint's
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        print(f"resumed {run_dir} at iteration {start} from {saved['path'].name}", flush=True)
    main_process = trainer.processes.is_main  # only the main process evaluates and writes files
    writer = _tensorboard(run_dir) if main_process else None

    def checkpoint(done: int) -> None:
        if main_process:
            save_checkpoint(run_dir, done, named, trainer.optimizer,
                            checkpoint_state(trainer, done, sampler.cursor, history) | {"evaluations": evaluations},
                            keep=cfg.keep_checkpoints)

    if start == 0 and main_process:
        before = evaluate_and_grid(trainer, eval_prompts, run_dir, "iter-000000", writer, 0)
        evaluations.append({k: v for k, v in before.items() if k != "_images"})
        before_images = before["_images"]
    metrics_file = (run_dir / "metrics.jsonl").open("a") if main_process else None
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=get_algorithm(cfg.algo).display_name, unit="it",
               disable=not main_process)
    with StopRequest() as stop:
        for iteration in bar:
            cursor = sampler.cursor
            try:
                record = trainer.iteration(iteration, sampler.take(cfg.prompts_per_iter))
            except TrainingStopped as error:  # checkpoint before this iteration, so a resumed run repeats it
                sampler.cursor = cursor
                checkpoint(iteration)
                raise TrainingStopped(f"{error} Checkpoint written at iteration {iteration}; resume with: "
                                      f"python -m trainer.run --resume {run_dir}") from None
            except ProcessLost as error:  # mid-iteration state: resume from the last checkpoint instead
                last = checkpoint_dirs(run_dir)
                since = f"from {last[-1].name}" if last else "from the start (no checkpoint yet)"
                raise ProcessLost(f"{error}; resume {since} with: python -m trainer.run --resume {run_dir}") from None
            history.append(record)
            done = iteration + 1
            if main_process:
                log_iteration(record, metrics_file, writer, bar)
                if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.iterations:
                    report = evaluate_and_grid(trainer, eval_prompts, run_dir, f"iter-{done:06d}", writer, done)
                    evaluations.append({k: v for k, v in report.items() if k != "_images"})
            signum = stop.agreed(trainer.processes)
            if signum or done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                checkpoint(done)
            if signum:
                bar.close()
                trainer.processes.barrier()
                raise stop.exit(signum, done, run_dir, announce=main_process)
        signum = stop.agreed(trainer.processes)  # a signal during the last iteration's checkpoint
        if signum:
            raise stop.exit(signum, cfg.iterations, run_dir, announce=main_process)
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


def log_iteration(record: dict, metrics_file, writer, bar) -> None:
    """One row of ``metrics.jsonl``, its TensorBoard scalars and the progress bar's figures."""
    metrics_file.write(json.dumps(record) + "\n")
    metrics_file.flush()
    if writer is not None:
        for key, value in record.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"train/{key}", value, record["iteration"])
    bar.set_postfix(reward=f"{record['reward_mean']:.3f}", window=record["window_start"], s_it=f"{record['seconds']:.1f}")


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard is not installed: no event files (pip install tensorboard)", flush=True)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


if __name__ == "__main__":
    sys.exit(run_command(main))

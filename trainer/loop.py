"""One training run, top to bottom: build, resume, evaluate, iterate (checkpoint, evaluate), evaluate, export.

Everything the run leaves goes into its :class:`mixgrpo.run_folder.RunFolder`. One iteration is
:meth:`trainer.iteration.Trainer.next_iteration`. With several processes only the main one
evaluates and writes files; all of them train, checkpoint at the same iterations and stop together.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch

from mixgrpo import get_algorithm
from mixgrpo.errors import TrainingStopped
from mixgrpo.evaluation import Evaluation, paired_rise, sample_images
from mixgrpo.run_folder import RunFolder, grid_tag

from .config import TrainConfig, config_dict
from .iteration import Trainer
from .processes import open_processes
from .threads import fit_threads_to_cpu_quota


def resolve_model_path(name: str) -> str:
    if name == "embedded":
        from mixgrpo.models.embedded import EMBEDDED_DIR
        return str(EMBEDDED_DIR)
    return name


def check_model(cfg: TrainConfig):
    """The model folder's adapter class, once the folder is complete and the model takes the run's resolution
    (no weights read: a bad folder or size fails before anything loads)."""
    from mixgrpo.models.loader import model_adapter_class

    adapter = model_adapter_class(resolve_model_path(cfg.model))
    adapter.check_resolution(cfg.resolution, cfg.resolution)
    adapter.check_options(cfg.model_options)
    return adapter


def with_model_defaults(cfg: TrainConfig, model) -> TrainConfig:
    """``cfg`` with what it leaves to the model filled in from the loaded model: the σ-grid shift."""
    import dataclasses

    if cfg.shift is not None:
        return cfg
    return dataclasses.replace(cfg, shift=model.sampling_shift(cfg.resolution, cfg.resolution, cfg.steps))


def resolve_device(cfg: TrainConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(cfg: TrainConfig, device: str = "cpu", transformer_on_meta: bool = False):
    """The config's model as an adapter, its parts in the dtypes of :mod:`mixgrpo.models.gpu`: frozen weights
    in the compute dtype, a full fine-tune's transformer in float32; its guidance scale when ``cfg_scale`` is
    set, else the model's own."""
    from mixgrpo.models import load_flow_model
    from mixgrpo.models.gpu import compute_dtype

    guidance = {} if cfg.cfg_scale is None else {"cfg_scale": cfg.cfg_scale}
    return load_flow_model(resolve_model_path(cfg.model), dtype=compute_dtype(cfg.mixed_precision, device),
                           device=device, transformer_dtype=torch.float32 if cfg.full_finetune else None,
                           transformer_on_meta=transformer_on_meta, quantize_timesteps=cfg.quantize_timesteps,
                           **cfg.model_options, **guidance)


def build(cfg: TrainConfig, eval_prompts: list[str] = (), processes=None) -> Trainer:
    """Rewards (first: an unknown one fails before the model loads), model with LoRA or full fine-tuning, trainer.

    On a GPU the text encoders encode once every prompt the run will draw (``iterations ×
    prompts_per_iter`` of the training set, in the sampler's seeded order) and every evaluation prompt;
    the rows stay in CPU memory and the encoders leave the GPU before the first iteration.
    """
    from mixgrpo.models.compile import compile_blocks
    from mixgrpo.models.gpu import compute_dtype, configure_attention
    from mixgrpo.rewards import load_rewards

    from .data import training_prompts
    from .phases import phase

    processes = processes or open_processes(cfg)  # before any load: the launch checked, this process's GPU known
    check_model(cfg)
    device = processes.load_device(resolve_device(cfg))
    if device == "cpu":
        fit_threads_to_cpu_quota()
    configure_attention(device)
    prompts = training_prompts(cfg.prompts)
    with phase("load", device):
        rewards = load_rewards(cfg.reward, options=cfg.reward_options, device=device)
        model = load_model(cfg, device, transformer_on_meta=processes.loads_on_main_only and not processes.is_main)
    torch.manual_seed(cfg.seed)
    if cfg.full_finetune:
        if cfg.kl_beta > 0:
            model.keep_reference_copy(compute_dtype(cfg.mixed_precision, device))
        model.transformer.requires_grad_(True)
        params = list(model.transformer.parameters())
    else:
        params = model.add_lora(rank=cfg.lora_rank, alpha=cfg.lora_alpha)
    if cfg.attention == "xformers":  # validated: CUDA only
        model.transformer.enable_xformers_memory_efficient_attention()
    if cfg.compile:
        compile_blocks(model, device, fallback=cfg.compile_fallback)
    trainer = Trainer(with_model_defaults(cfg, model), model, rewards, prompts, params, processes)
    if torch.device(device).type == "cuda":  # the prompts this run draws (a resumed run's too) and evaluates
        drawn = trainer.sampler.peek(cfg.iterations * cfg.prompts_per_iter, start=0)
        with phase("load", device):
            model.cache_prompts([prompts[i] for i in dict.fromkeys(drawn)] + list(eval_prompts))
    set_checkpointing(cfg, model, processes)
    return trainer


def set_checkpointing(cfg: TrainConfig, model, processes) -> str:
    """Checkpoint the transformer's blocks as ``--checkpointing`` says, ``auto`` made concrete from the GPU memory free
    once the model is placed and the text encoders are gone (mixgrpo/models/checkpointing.py); returns the mode."""
    from mixgrpo.models.checkpointing import apply_checkpointing, resolve_mode

    free = torch.cuda.mem_get_info(model.device)[0] if model.device.type == "cuda" else None
    tokens = (cfg.resolution // model.vae_scale) ** 2 // model.patch_size ** 2 + getattr(model, "max_sequence_length", 0)
    samples = cfg.micro_batch * (2 if model.guided else 1)  # classifier-free guidance doubles each forward
    mode = resolve_mode(cfg.checkpointing, len(model.shard_units()), tokens, model.hidden_size, samples, free)
    if cfg.checkpointing == "auto" and processes.is_main:
        print(f"checkpointing: auto → {mode} ({samples} samples of {tokens} tokens per forward"
              + (f", {free / 2**30:.1f} GiB free)" if free is not None else ", on a CPU)"), flush=True)
    apply_checkpointing(model, mode)
    return mode


def agree_on_run_folder(processes, folder: RunFolder) -> RunFolder:
    """Every process takes the main process's run folder (a default name holds the time, which may differ
    by a second between processes) and must see it: the main process writes a file beside it and every
    other looks for it, before anything loads. Each process writes its checkpoint shards there and reads
    them all on resume, so the folder must be on a file system every node shares."""
    import secrets

    from .config import ConfigError

    if processes.world == 1:
        return folder
    path, token = processes.gather_objects((str(folder.path), secrets.token_hex(8)))[0]
    folder = RunFolder(path)
    probe = folder.path.parent / f".mixgrpo-shared-{token}"
    if processes.is_main:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text(token)
    processes.barrier()
    blind = [rank for rank, seen in enumerate(processes.gather_objects(probe.is_file())) if not seen]
    processes.barrier()
    if processes.is_main:
        probe.unlink(missing_ok=True)
    if blind:
        raise ConfigError(f"process(es) {', '.join(map(str, blind))} of {processes.world} cannot see "
                          f"{folder.path.parent}, where the main process writes the run: each process writes its checkpoint shards there "
                          "and reads them on resume. Put --run-dir on a file system every node shares.")
    return folder


@contextlib.contextmanager
def resume_hint_on_loss(folder: RunFolder):
    """A lost process, wherever it is noticed (a pass, a checkpoint's barrier, the export), ends the run with
    the checkpoint to resume from: the last finished one, since the state in memory is mid-iteration."""
    from .processes import ProcessLost

    try:
        yield
    except ProcessLost as error:
        last = folder.checkpoint_dirs()
        since = f"from {last[-1].name}" if last else "from the start (no checkpoint yet)"
        raise ProcessLost(f"{error}; resume {since} with: python -m trainer.run --resume {folder.path}") from None


def train(cfg: TrainConfig, folder: RunFolder) -> dict:
    """Train ``cfg`` into ``folder`` (a new run, or ``cfg.resume``'s); returns the summary (``{}`` off the main process)."""
    from mixgrpo.plots import plot_training

    from .checkpoint import read_latest_checkpoint, restore_checkpoint, save_checkpoint, save_sharded_checkpoint
    from .data import evaluation_prompts
    from .phases import phase
    from .progress import RunProgress
    from .signals import IterationAbandoned, StopRequest

    # -- build; a new run's folder appears only once everything loaded (a failed start leaves nothing)
    eval_prompts = evaluation_prompts(cfg.eval_prompts)
    processes = open_processes(cfg)
    folder = agree_on_run_folder(processes, folder)
    trainer = build(cfg, eval_prompts, processes)
    processes, main_process = trainer.processes, trainer.processes.is_main
    sharded = processes.sharded is not None
    if main_process and not cfg.resume:
        folder.write_config(config_dict(trainer.cfg))  # the model's defaults filled in
    processes.barrier()

    # -- resume: weights, optimizer, RNG, prompt order, windows, history and evaluations
    start, evaluations = 0, []
    saved = read_latest_checkpoint(folder.path, trainer.named_params, trainer.optimizer,
                                   restore=lambda content: restore_checkpoint(content, trainer.model.transformer,
                                                                              trainer.optimizer),
                                   gather=processes.gather_objects,  # every process resumes the same checkpoint
                                   **({} if main_process else {"warn": lambda message: None})) if cfg.resume else None
    if saved is not None:
        state = saved["state"]
        start, evaluations = trainer.load_state_dict(state), state.get("evaluations", [])
        if main_process:  # rows written after that checkpoint belong to the killed attempt
            folder.rewrite_metrics(trainer.history)
            print(f"resumed {folder.path} at iteration {start} from {saved['path'].name}", flush=True)
    writer = tensorboard(folder) if main_process else None
    progress = RunProgress(start, cfg.iterations, cfg.eval_every, get_algorithm(cfg.algo).display_name,
                           enabled=main_process)

    def held_out(iteration: int) -> Evaluation | None:
        """Every process samples and scores its part; the main process joins them and writes."""
        with progress.evaluation(iteration, len(eval_prompts) * cfg.eval_seeds), \
                phase("evaluation", trainer.model.device):
            result = evaluate_and_grid(trainer, eval_prompts, folder, iteration, writer)
        if result is not None:
            evaluations.append(result.report() | {"iteration": iteration,
                                                  "seconds": round(progress.evaluation_seconds[-1], 3)})
        return result

    timing = {"checkpoint_s": 0.0}

    def checkpoint(done: int) -> None:
        """Every process calls it: under FSDP2 each writes its own shards, else the main one writes all."""
        started = time.perf_counter()
        state = trainer.state_dict(done) | {"evaluations": evaluations}
        pending = trainer.pending_tensors()
        if sharded:
            save_sharded_checkpoint(folder.path, done, trainer.model.transformer, trainer.optimizer, state, processes,
                                    keep=cfg.keep_checkpoints, pending=pending)
        else:
            weights, optimizer = trainer.checkpoint_tensors()
            if main_process:
                save_checkpoint(folder.path, done, weights, optimizer, state, keep=cfg.keep_checkpoints,
                                pending=pending)
        timing["checkpoint_s"] = time.perf_counter() - started

    def rest_of_iteration(elapsed: float) -> float:
        """Seconds the iteration in flight still needs, with a checkpoint: from the mean so far (none yet: ∞)."""
        seconds = [h["seconds"] for h in trainer.history]
        return sum(seconds) / len(seconds) - elapsed + timing["checkpoint_s"] if seconds else math.inf

    # -- iterate
    metrics = folder.metrics_writer() if main_process else None
    with resume_hint_on_loss(folder):
        with progress:
            before = held_out(0) if start == 0 else None
            with StopRequest() as stop:
                if cfg.stop_grace is not None:
                    trainer.stop_point = lambda elapsed: stop.safe_point(processes, rest_of_iteration(elapsed),
                                                                         cfg.stop_grace)
                for iteration in range(start, cfg.iterations):
                    try:
                        record = trainer.next_iteration(iteration)
                    except TrainingStopped as error:  # checkpoint before this iteration, so a resumed run repeats it
                        checkpoint(iteration)
                        raise TrainingStopped(f"{error} Checkpoint written at iteration {iteration}; resume with: "
                                              f"python -m trainer.run --resume {folder.path}") from None
                    except IterationAbandoned as abandoned:  # its start is checkpointed: a resumed run repeats it
                        checkpoint(iteration)
                        progress.close()
                        processes.barrier()
                        raise stop.exit(abandoned.signum, iteration, folder.path, announce=main_process,
                                        abandoned=True) from None
                    done = iteration + 1
                    if main_process:
                        log_iteration(record, metrics, writer)
                        progress.iteration_done(record)
                    if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.iterations:
                        held_out(done)
                    signum = stop.agreed(processes)
                    if signum or done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                        checkpoint(done)
                    if signum:
                        progress.close()
                        processes.barrier()
                        raise stop.exit(signum, done, folder.path, announce=main_process)
                signum = stop.agreed(processes)  # a signal during the last iteration's checkpoint
                if signum:
                    raise stop.exit(signum, cfg.iterations, folder.path, announce=main_process)

            # -- evaluate, plot, export
            processes.barrier()
            after = held_out(cfg.iterations)
        export(trainer, folder)  # every process: FSDP2 gathers the weights to the main one
        processes.close()
    if not main_process:
        return {}
    metrics.close()
    plot_training(trainer.history, folder.training_plot, evaluations)
    if before is not None:
        save_before_after(before, after, folder)
    summary = {"before": evaluations[0]["mean"], "after": evaluations[-1]["mean"],
               "before_per_category": evaluations[0].get("per_category", {}),
               "after_per_category": evaluations[-1].get("per_category", {}),
               "seconds_per_iteration": sum(h["seconds"] for h in trainer.history) / max(1, len(trainer.history)),
               "run_dir": str(folder.path)}
    rise = paired_rise(evaluations[0], evaluations[-1]) if len(evaluations) > 1 else None
    if rise is not None:
        summary["rise"] = rise.as_dict()
    folder.write_evaluations(summary, evaluations)
    if writer is not None:
        writer.close()
    change = rise.describe() if rise is not None else f"{summary['after'] - summary['before']:+.3f}"
    print(f"held-out reward: before {summary['before']:.3f} → after {summary['after']:.3f} ({change}); "
          f"run folder: {folder.path}", flush=True)
    return summary


def evaluate_and_grid(trainer: Trainer, prompts: list[str], folder: RunFolder, iteration: int,
                      writer) -> Evaluation | None:
    """The held-out evaluation after ``iteration`` iterations, with its sample grid (24 images) and scalar.

    Each process samples and scores a contiguous part of the images; the main process joins the parts
    (in order: the same evaluation as one process's), writes the grid and returns it; the others None.
    """
    from mixgrpo.evaluation import join_evaluations
    from mixgrpo.plots import save_sample_grid

    cfg, processes = trainer.cfg, trainer.processes
    trainer.model.transformer.eval()
    # every process runs as many batches of as many images (sharded models gather in every call)
    batch = processes.min_int(trainer.model.sampling_batch(cfg.resolution, cfg.resolution))
    images, texts = sample_images(trainer.model, prompts, range(cfg.eval_seeds), steps=cfg.steps, shift=cfg.shift,
                                  resolution=cfg.resolution, batch=batch, part=(processes.rank, processes.world))
    mine = Evaluation(images, texts, trainer.rewards.score(images, texts)) if texts else Evaluation(images, texts, None)
    parts = processes.gather_objects(mine)
    if not processes.is_main:
        return None
    result = join_evaluations(parts)
    picks = spread(len(result.prompts), 24)
    save_sample_grid(result.images[picks], [result.prompts[i] for i in picks], folder.sample_grid(grid_tag(iteration)),
                     columns=8)
    if writer is not None:
        writer.add_scalar("eval/mean", float(torch.nanmean(result.scores.total())), iteration)
    return result


def spread(count: int, most: int) -> list[int]:
    """Up to ``most`` indices spread evenly over ``range(count)``."""
    return list(range(0, count, max(1, count // most)))[:most]


def save_before_after(before: Evaluation, after: Evaluation, folder: RunFolder) -> None:
    """12 held-out prompts, each before | after training on the same noise."""
    from mixgrpo.plots import save_sample_grid

    pairs = spread(len(after.prompts), 12)
    images = torch.stack([image for i in pairs for image in (before.images[i], after.images[i])])
    captions = [f"{tag}: {after.prompts[i]}" for i in pairs for tag in ("before", "after")]
    save_sample_grid(images, captions, folder.sample_grid("before_after"), columns=8)


def export(trainer: Trainer, folder: RunFolder):
    """The LoRA (or the whole transformer) into the run folder, and a copy into ComfyUI when asked.

    Every process calls it: under FSDP2 the weights are gathered whole to the main process, which writes.
    """
    from pathlib import Path

    from .outputs import export_to_comfyui, save_lora, save_transformer

    cfg = trainer.cfg
    weights = trainer.processes.gathered_weights(trainer.model.transformer, trainable_only=not cfg.full_finetune)
    if not trainer.processes.is_main:
        return None
    result = save_transformer(trainer.model, folder.transformer, weights) if cfg.full_finetune else \
        save_lora(trainer.model, folder.lora, cfg.lora_rank, cfg.lora_alpha, weights)
    if cfg.export_comfyui:
        print(f"exported to {export_to_comfyui(result, Path(cfg.export_comfyui), folder.name, cfg.full_finetune)}")
    return result


def log_iteration(record: dict, metrics, writer) -> None:
    """One row of ``metrics.jsonl`` and its TensorBoard scalars."""
    metrics.write(record)
    if writer is not None:
        for key, value in record.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"train/{key}", value, record["iteration"])


def tensorboard(folder: RunFolder):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard is not installed: no event files (pip install tensorboard)", flush=True)
        return None
    return SummaryWriter(str(folder.tensorboard))

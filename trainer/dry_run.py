"""``python -m trainer.run … --dry-run``: every check that needs no weights, then the plan; nothing loads.

Run it as the real run will be run (inside the same ``accelerate launch`` line, so the world size is
the launch's). It checks, as a real run does before it loads anything:

- every option in its range and every combination possible (``parse_config``), reward names and options;
- the launch: sharding, offload and mixed precision against the accelerate config, and the samples of
  an iteration splitting into processes × updates;
- the run folder: the one the main process picked, visible to every process (a shared file system);
- the model folder: a ``model_index.json`` of a supported pipeline with every component folder.

Then the main process prints the plan: processes, samples per process, updates and micro-batches,
the model's parameter counts (its configs built on the meta device) and the memory each phase needs
per process by ``trainer/memory_plan.py``.
"""

from __future__ import annotations

import math
import os

from mixgrpo.run_folder import RunFolder

from .config import TrainConfig

GB = 1e9


def memory_setting(cfg: TrainConfig, sharding: str, offload: bool) -> str:
    """The row of :mod:`trainer.memory_plan`'s table this run is."""
    if not cfg.full_finetune:
        return "LoRA, FSDP2" if sharding in ("fsdp", "hsdp") else "LoRA, DDP"
    return "full, FSDP2 + CPU offload" if offload else "full, FSDP2"


def plan_lines(cfg: TrainConfig, processes, model_path: str, device: str) -> list[str]:
    """What the run will do on each process and the memory it needs there."""
    from mixgrpo.models.embedded import read_settings
    from mixgrpo.models.gpu import compute_dtype
    from mixgrpo.rewards.registry import parse_reward_spec

    from .memory_plan import REWARD_PARAMS, folder_sizes, host_memory_per_node, phases

    world = processes.world
    samples = cfg.group_size * cfg.prompts_per_iter
    mine = samples // world
    part = math.ceil(mine / cfg.updates_per_iter)
    micro = min(cfg.micro_batch, part)
    lines = [f"processes: {world} ({processes.sharding}{', offload' if processes.offload else ''}), "
             f"device {device}, mixed precision {cfg.mixed_precision}",
             f"samples per iteration: {samples} = {cfg.prompts_per_iter} prompts × {cfg.group_size}; {mine} per "
             f"process, in {cfg.updates_per_iter} update(s) of {part}, micro-batches of {micro}"]
    sizes = folder_sizes(model_path, cfg.lora_rank)
    trained = "every weight" if cfg.full_finetune else f"LoRA rank {cfg.lora_rank}: {sizes['lora'] / 1e6:.2f} M"
    lines.append(f"model: transformer {sizes['params'] / 1e6:,.1f} M parameters in {sizes['blocks']} blocks; "
                 f"trains {trained}; text encoders {sizes['text_encoders'] / 1e6:,.1f} M, VAE {sizes['vae'] / 1e6:,.1f} M")
    names = [name for name, _ in parse_reward_spec(cfg.reward)]
    counted = [n for n in names if n in REWARD_PARAMS]
    frozen_bytes = compute_dtype(cfg.mixed_precision, device).itemsize
    text_tokens = read_settings(model_path).get("max_sequence_length", 512)
    shards = int(os.environ.get("LOCAL_WORLD_SIZE", world)) if processes.sharding == "hsdp" else world
    setting = memory_setting(cfg, processes.sharding, processes.offload)
    reward_bytes = 4 * sum(REWARD_PARAMS[n] for n in counted)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    host = host_memory_per_node(setting, sizes, shards, per_node, reward_bytes, frozen_bytes)
    figures = phases(setting, sizes, shards, cfg.resolution, micro, mine, reward_bytes, frozen_bytes=frozen_bytes,
                     text_tokens=text_tokens, checkpointing=cfg.checkpointing)
    uncounted = [n for n in names if n not in REWARD_PARAMS]
    lines.append(f"expected memory per process at {cfg.resolution}² (trainer/memory_plan.py): load "
                 f"{figures['load'] / GB:.2f} GB, decode {figures['decode'] / GB:.2f} GB, update "
                 f"{figures['update'] / GB:.2f} GB; peak {figures['gpu'] / GB:.2f} GB"
                 + (f" (reward models not counted: {', '.join(uncounted)})" if uncounted else "")
                 + (f"; CPU {figures['cpu'] / GB:.2f} GB" if "cpu" in figures else ""))
    node = f"; a node of {min(per_node, world)}: {host['host_node'] / GB:.2f} GB" if world > 1 else ""
    lines.append(f"expected host memory at load (trainer/memory_plan.py): main process {host['host_main'] / GB:.2f} GB"
                 + (f", each other {host['host_other'] / GB:.2f} GB{node}" if world > 1 else "")
                 + ", plus each process's Python and CUDA runtime")
    return lines


def dry_run(cfg: TrainConfig, folder: RunFolder) -> dict:
    """Check what needs no weights, print the plan on the main process, load nothing; returns the plan's lines."""
    from .processes import open_processes
    from .loop import agree_on_run_folder, check_model, resolve_device, resolve_model_path

    processes = open_processes(cfg)
    folder = agree_on_run_folder(processes, folder)
    model_path = resolve_model_path(cfg.model)
    check_model(cfg)
    device = processes.load_device(resolve_device(cfg))
    lines = plan_lines(cfg, processes, model_path, device)
    if processes.is_main:
        print("\n".join([f"dry run of {folder.path}: every check passed; nothing was loaded", *lines]), flush=True)
    processes.close()
    return {"plan": lines}

"""One config object drives a training run: defaults < YAML file (``--config``) < command-line flags.

Every field documents itself (``--help`` prints it). The defaults train the embedded shapes model
on the ``shapes`` reward on a CPU in a few minutes; ``trainer/configs/`` holds FLUX and SD3 recipes
with the paper's hyper-parameters (SPEC.md §4).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from mixgrpo.errors import MixGRPOError


class ConfigError(MixGRPOError, ValueError):
    """A config file or flag that cannot be used: unknown key, wrong type, impossible combination."""


# environment variables ``accelerate launch`` sets for a sharded launch → the name of the scheme
SHARDED_LAUNCHES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}


def check_launch(environ=os.environ) -> None:
    """Refuse an ``accelerate launch`` that asks for FSDP or DeepSpeed sharding.

    The loop replicates the model on every process and averages gradients with its own
    all-reduce (:class:`trainer.loop.Processes`); it never hands the model to ``Accelerator.prepare``.
    Under an FSDP or DeepSpeed launch config nothing would be sharded, and a full fine-tune of
    FLUX.1-dev would run out of memory after the model loaded, so the launch stops here instead.
    """
    from accelerate.utils.environment import str_to_bool  # how accelerate itself reads these flags

    for variable, scheme in SHARDED_LAUNCHES.items():
        if str_to_bool(environ.get(variable) or "false"):
            raise ConfigError(
                f"accelerate launch asked for {scheme} sharding ({variable}={environ[variable]}), which "
                f"trainer.run does not implement yet: every process holds the whole model and gradients are "
                f"averaged across processes. Launch with a plain multi-process config instead, e.g. "
                f"`accelerate launch --num_processes 8 -m trainer.run ...`, and train a LoRA on models "
                f"that do not fit one device.")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # -- model ------------------------------------------------------------------------------
    model: str = _f("embedded", "diffusers FLUX/SD3 folder or hub id; 'embedded' = the shapes model in the repo")
    resolution: int = _f(128, "image side in pixels (must divide by 16)")
    lora_rank: int = _f(32, "LoRA rank on the transformer's attention projections")
    lora_alpha: float = _f(32.0, "LoRA alpha (scale = alpha / rank)")
    full_finetune: bool = _f(False, "train every transformer weight instead of a LoRA")
    gradient_checkpointing: bool = _f(False, "recompute transformer activations in the backward pass")
    mixed_precision: str = _f("no", "no | bf16 | fp16 (autocast on GPU; master weights stay fp32)",
                              choices=("no", "bf16", "fp16"))
    attention: str = _f("sdpa", "sdpa | xformers (CUDA only)", choices=("sdpa", "xformers"))
    quantize_timesteps: bool = _f(False, "feed the model floor(1000σ)/1000 as the official release does")
    cfg_scale: float = _f(0.0, "classifier-free guidance scale of every rollout (the policy is the guided "
                               "field); 0 = the model's own (its mixgrpo.json, else 1 = none)")
    # -- algorithm -------------------------------------------------------------------------
    algo: str = _f("mixgrpo", "mixgrpo | flash | flash_star | dancegrpo",
                   choices=("mixgrpo", "flash", "flash_star", "dancegrpo"))
    window: int = _f(4, "sliding-window size w (SDE steps trained per iteration)")
    window_strategy: str = _f("progressive", "progressive | frozen | random | decay | exp_decay",
                              choices=("progressive", "frozen", "random", "decay", "exp_decay"))
    window_start: int = _f(0, "left boundary l of the first window (every window's, when frozen)")
    shift_interval: int = _f(25, "iterations before the window moves (progressive τ)")
    stride: int = _f(1, "steps the window moves each time")
    steps: int = _f(25, "sampling steps T")
    shift: float = _f(3.0, "time shift s of the σ grid")
    eta: float = _f(0.0, "SDE noise level η; 0 = the algorithm's default (0.7 flow, 0.3 dance)")
    compression: float = _f(0.0, "Flash compression r̃ after the window; 0 = the algorithm's default")
    solver: str = _f("", "ODE solver after the window: euler | dpm2m | dpm2m_heun; '' = the algorithm's default "
                     "(euler for mixgrpo/dancegrpo, dpm2m for flash/flash_star)",
                     choices=("", "euler", "dpm2m", "dpm2m_heun"))
    share_trunk: bool = _f(True, "run the steps before the window once per group (same samples, fewer NFEs); "
                                 "off only to measure what sharing saves")
    dance_fraction: float = _f(0.6, "DanceGRPO: fraction of the T − 1 steps each sample trains")
    dance_first: int = _f(0, "DanceGRPO: train the first k steps of every sample instead (25/4*); 0 = random steps")
    # -- GRPO -------------------------------------------------------------------------------
    group_size: int = _f(8, "samples per prompt (N); all share the initial noise")
    prompts_per_iter: int = _f(4, "prompt groups per iteration (over all processes)")
    iterations: int = _f(60, "training iterations")
    reward: str = _f("shapes", "rewards with weights, e.g. 'shapes' or 'hpsv2.1:1,pickscore:1'")
    advantage_aggregation: str = _f("advantage", "advantage (z-score each reward, then weight) | reward",
                                    choices=("advantage", "reward"))
    advantage_clip: float = _f(5.0, "clamp advantages to ±this")
    clip_range: float = _f(1e-4, "PPO clip ε on the per-element-mean log-prob ratio")
    kl_beta: float = _f(0.0, "KL weight β to the base model (LoRA switched off)")
    learning_rate: float = _f(3e-4, "AdamW learning rate (paper, FLUX: 1e-5)")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping norm")
    updates_per_iter: int = _f(2, "optimizer steps per iteration (the samples are split into this many parts)")
    micro_batch: int = _f(16, "samples per forward/backward pass (gradient accumulation fills a part)")
    max_nan_updates: int = _f(3, "stop after this many consecutive NaN losses or gradients")
    # -- data, evaluation, run ---------------------------------------------------------------
    prompts: str = _f("", "text file with one training prompt per line; empty = the shapes train split")
    eval_prompts: str = _f("", "text file of evaluation prompts; empty = the shapes test split")
    eval_seeds: int = _f(2, "fixed seeds per evaluation prompt")
    eval_every: int = _f(20, "evaluate (and write a sample grid) every this many iterations; 0 = start/end only")
    checkpoint_every: int = _f(20, "checkpoint every this many iterations (and at the end)")
    keep_checkpoints: int = _f(2, "how many checkpoints to keep")
    run_dir: str = _f("runs", "parent folder of run folders")
    name: str = _f("", "run name (default: <algo>-<time>)")
    resume: str = _f("", "run folder to resume exactly where its last checkpoint stopped")
    export_comfyui: str = _f("", "ComfyUI folder to copy the result into (models/loras or models/diffusion_models)")
    seed: int = _f(0, "seed of prompts, noise, windows and LoRA init")
    device: str = _f("auto", "auto | cpu | cuda")

    def validate(self) -> None:
        check_launch()
        if self.group_size < 2:
            raise ConfigError(f"group_size must be ≥ 2: GRPO compares samples within a group (got {self.group_size}).")
        if self.prompts_per_iter < 1 or self.iterations < 1:
            raise ConfigError("prompts_per_iter and iterations must be ≥ 1.")
        if self.cfg_scale < 0:
            raise ConfigError(f"cfg_scale must be ≥ 0 (0: the model's own, 1: no guidance); got {self.cfg_scale}.")
        if self.resolution % 16:
            raise ConfigError(f"resolution {self.resolution} must divide by 16 (VAE ×8, patch 2).")
        if self.attention == "xformers":
            import torch
            if not torch.cuda.is_available():
                raise ConfigError("--attention xformers needs a CUDA GPU; on this machine use --attention sdpa.")
        if self.kl_beta > 0 and self.full_finetune:
            raise ConfigError("kl_beta > 0 needs the LoRA switched off as the reference; with --full-finetune "
                              "there is no frozen copy of the model. Use a LoRA or set --kl-beta 0.")
        samples = self.group_size * self.prompts_per_iter
        if self.updates_per_iter < 1 or samples % self.updates_per_iter:
            raise ConfigError(f"updates_per_iter={self.updates_per_iter} must divide the {samples} samples "
                              "of an iteration (group_size × prompts_per_iter).")


def _field_types() -> dict[str, type]:
    return {f.name: type(f.default) for f in fields(TrainConfig)}


def load_yaml(path: str | Path) -> dict:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, found {type(data).__name__}.")
    known = _field_types()
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown config key(s) {unknown}. Known keys: {', '.join(sorted(known))}.")
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.run", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="YAML file of config keys (flags override it)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"help": f.metadata["help"], "default": None, "dest": f.name}
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(flag, type=type(f.default), choices=f.metadata.get("choices"), **kwargs)
    return parser


def parse_config(argv=None) -> TrainConfig:
    """Defaults, then ``--config`` YAML, then flags; validated."""
    args = vars(build_parser().parse_args(argv))
    values = load_yaml(args.pop("config")) if args.get("config") else {}
    values.update({k: v for k, v in args.items() if v is not None})
    types = _field_types()
    try:
        config = TrainConfig(**{k: types[k](v) if types[k] is not bool else bool(v) for k, v in values.items()})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad config value: {error}") from None
    config.validate()
    return config


def config_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)

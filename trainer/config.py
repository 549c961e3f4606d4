"""One config object drives a training run: defaults < YAML file (``--config``) < command-line flags.

Every field documents itself (``--help`` prints it). The defaults train the embedded shapes model
on the ``shapes`` reward on a CPU in a few minutes; ``trainer/configs/`` holds FLUX and SD3 recipes
with the paper's hyper-parameters (docs/algorithm.md §4).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from mixgrpo.algorithm.algorithms import ALGORITHMS, algorithm_names, defaults_table
from mixgrpo.algorithm.steps import ODE_SOLVERS
from mixgrpo.cli import add_debug_flag
from mixgrpo.errors import MixGRPOError
from mixgrpo.rewards.registry import parse_reward_options

SHARDINGS = ("ddp", "fsdp", "hsdp")
from mixgrpo.algorithm.windows import strategy_names


class ConfigError(MixGRPOError, ValueError):
    """A config file or flag that cannot be used: unknown key, wrong type, impossible combination."""


@dataclass(frozen=True)
class Range:
    """The valid values of a number: ``low ≤ x ≤ high``, with open ends where asked; never NaN or ±inf."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        high = "∞)" if self.high == math.inf else f"{self.high:g}{')' if self.high_open else ']'}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {high}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1, low_open=True)


def _f(default, help, valid: Range | None = None, **kw):
    """A config field: ``help`` (a string, or a callable for text read from a registry), valid range, choices.

    A field that defaults to ``None`` ("unset") names its ``type`` and says in ``unset`` what an unset
    value means (a string, or a callable: e.g. each algorithm's own value, read from the registry).
    """
    metadata = {"help": help, "valid": valid, **kw}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def help_text(f: dataclasses.Field) -> str:
    """The field's ``--help`` line: its text (asked now, registries grow), valid range and default."""
    text = f.metadata["help"]() if callable(f.metadata["help"]) else f.metadata["help"]
    if f.metadata.get("valid") is not None:
        text += f" [valid: {f.metadata['valid']}]"
    if f.default is None:
        unset = f.metadata["unset"]
        return f"{text} (default: {unset() if callable(unset) else unset})"
    return f"{text} (default: {default_of(f)!r})"


def _choices(f: dataclasses.Field) -> tuple | None:
    """A field's allowed values; a callable is asked each time (registries grow at run time)."""
    choices = f.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices


def default_of(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@dataclass
class TrainConfig:
    # -- model ------------------------------------------------------------------------------
    model: str = _f("embedded", "diffusers FLUX/SD3 folder or hub id; 'embedded' = the shapes model in the repo")
    resolution: int = _f(128, "image side in pixels (a multiple of the model's: 16 for FLUX and SD3)", Range(16))
    lora_rank: int = _f(32, "LoRA rank on the transformer's attention projections", AT_LEAST_ONE)
    lora_alpha: float = _f(32.0, "LoRA alpha (scale = alpha / rank)", POSITIVE)
    full_finetune: bool = _f(False, "train every transformer weight instead of a LoRA")
    checkpointing: str = _f("off", "recompute transformer activations in the backward pass: off | full (every block) | "
                                   "selective (every other block) | auto (off where the activations fit in half the "
                                   "free GPU memory, else selective, else full; off on a CPU)",
                            choices=("off", "full", "selective", "auto"))
    mixed_precision: str = _f("no", "no | bf16 | fp16 (on a GPU: frozen weights load in it and autocast computes in "
                                    "it; trained weights stay fp32); left at no under accelerate launch: the "
                                    "launch's", choices=("no", "bf16", "fp16"))
    attention: str = _f("sdpa", "sdpa | xformers (CUDA only)", choices=("sdpa", "xformers"))
    compile: bool = _f(False, "compile each transformer block with torch.compile (rollout and update): faster "
                              "iterations after a one-time compile of about a minute; pays on long runs")
    compile_fallback: bool = _f(False, "with --compile: where compiling cannot work, warn and train uncompiled "
                                       "instead of stopping")
    quantize_timesteps: bool = _f(False, "feed the model floor(1000σ)/1000 as the official release does")
    cfg_scale: float | None = _f(None, "classifier-free guidance scale of every rollout (the policy is the guided "
                                       "field; 1 = no guidance)", POSITIVE, type=float,
                                 unset="the model's own: its mixgrpo.json, else 1")
    model_options: dict = _f({}, "an option of the model's adapter, as option=value (repeat the flag), e.g. "
                                 "negative_prompt=blurry, guidance=3.5 (FLUX.1/FLUX.2 [dev]), cfg_normalization=1 "
                                 "(Z-Image); in YAML a mapping; docs/models.md lists each model's",
                             flag="--model-option", metavar="OPTION=VALUE")
    # -- algorithm -------------------------------------------------------------------------
    algo: str = _f("flash", lambda: "training algorithm: " + ", ".join(
                   f"{a.name} = {a.display_name}" for a in ALGORITHMS.values()), choices=algorithm_names)
    window: int = _f(4, "sliding-window size w (SDE steps trained per iteration)", AT_LEAST_ONE)
    window_strategy: str = _f("progressive", lambda: "how the window moves: " + " | ".join(strategy_names()),
                              choices=strategy_names)
    window_start: int = _f(0, "left boundary l of the first window (every window's, when frozen)", NON_NEGATIVE)
    shift_interval: int = _f(25, "iterations before the window moves (progressive τ)", AT_LEAST_ONE)
    stride: int = _f(1, "steps the window moves each time", AT_LEAST_ONE)
    steps: int = _f(25, "sampling steps T", Range(2))
    shift: float | None = _f(None, "time shift s of the σ grid (the paper's: 3)", POSITIVE, type=float,
                             unset="the model's: the one its folder records (the embedded model: 3), else its "
                                   "scheduler's for the resolution (FLUX.1: e^μ of the image's tokens)")
    eta: float | None = _f(None, "SDE noise level η", Range(0, 10, low_open=True), type=float,
                           unset=lambda: f"the algorithm's own: {defaults_table('eta')}")
    compression: float | None = _f(None, "Flash compression r̃ of the grid after the window (1 = off)",
                                   FRACTION, type=float,
                                   unset=lambda: f"the algorithm's own: {defaults_table('compression')}")
    solver: str | None = _f(None, lambda: f"ODE solver after the window: {' | '.join(ODE_SOLVERS)}", type=str,
                            choices=ODE_SOLVERS, unset=lambda: f"the algorithm's own: {defaults_table('solver')}")
    share_trunk: bool = _f(True, "run the steps before the window once per group (same samples, fewer NFEs); "
                                 "off only to measure what sharing saves")
    dance_fraction: float = _f(0.6, "DanceGRPO: fraction of the T − 1 steps each sample trains", FRACTION)
    dance_first: int | None = _f(None, "DanceGRPO: train the first k steps of every sample (25/4*)", AT_LEAST_ONE,
                                 type=int, unset="a random dance_fraction of the steps per sample")
    # -- GRPO -------------------------------------------------------------------------------
    group_size: int = _f(8, "samples per prompt (N); all share the initial noise", Range(2))
    prompts_per_iter: int = _f(4, "prompt groups per iteration (over all processes)", AT_LEAST_ONE)
    iterations: int = _f(24, "training iterations", AT_LEAST_ONE)
    reward: str = _f("shapes", "rewards with weights, e.g. 'shapes' or 'hpsv2.1:1,pickscore:1,http:0.5'")
    reward_options: dict = _f({}, "options of one reward, as reward.option=value (repeat the flag), e.g. "
                                  "http.url=http://127.0.0.1:8000/score; in YAML a mapping {http: {url: ...}}",
                              flag="--reward-option")
    reward_stage: str = _f("auto", "overlapped (score each prompt group on a worker thread while the next group "
                                   "rolls out) | sequential (after the rollout) | auto (overlapped on a GPU or with "
                                   "rewards that all wait on the network, else sequential); the same run to float "
                                   "rounding", choices=("auto", "overlapped", "sequential"))
    pipeline: str = _f("on-policy", "on-policy (each iteration trains on its own batch) | one-step-off (iteration k "
                                    "trains on batch k − 1 while batch k is scored: off-policy by one update, corrected "
                                    "by a truncated importance weight; N iterations make N − 1 updates)",
                       choices=("on-policy", "one-step-off"))
    importance_cap: float = _f(2.0, "one-step-off: the importance weight π_prox/π_behaviour is truncated at this",
                               Range(1))
    max_failed_iterations: int = _f(3, "stop after this many consecutive iterations in which every sample's reward "
                                       "failed (their updates are skipped)", AT_LEAST_ONE)
    advantage_aggregation: str = _f("advantage", "advantage (z-score each reward, then weight) | reward",
                                    choices=("advantage", "reward"))
    advantage_clip: float = _f(5.0, "clamp advantages to ±this", POSITIVE)
    clip_range: float = _f(1e-4, "PPO clip ε on the per-element-mean log-prob ratio", Range(0, 1, low_open=True, high_open=True))
    kl_beta: float = _f(0.0, "KL weight β to the base model (the LoRA switched off; with --full-finetune a frozen "
                             "copy of the starting transformer, sharded like it under FSDP2)", NON_NEGATIVE)
    learning_rate: float = _f(3e-4, "AdamW learning rate (paper, FLUX: 1e-5)", Range(0, 1, low_open=True))
    weight_decay: float = _f(1e-4, "AdamW weight decay", NON_NEGATIVE)
    max_grad_norm: float = _f(1.0, "gradient clipping norm", POSITIVE)
    updates_per_iter: int = _f(2, "optimizer steps per iteration (the samples are split into this many parts)",
                               AT_LEAST_ONE)
    micro_batch: int = _f(16, "samples per forward/backward pass (gradient accumulation fills a part)", AT_LEAST_ONE)
    batch_transitions: bool = _f(False, "one forward and backward for all window transitions of a micro-batch "
                                        "instead of one per transition (the same gradient to float rounding; more "
                                        "memory; no faster on a 2-core CPU: benchmarks/results/stages.md)")
    max_nan_updates: int = _f(3, "stop after this many consecutive NaN losses or gradients", AT_LEAST_ONE)
    # -- data, evaluation, run ---------------------------------------------------------------
    prompts: str | None = _f(None, "text file with one training prompt per line", type=str,
                             unset="the shapes train split")
    eval_prompts: str | None = _f(None, "text file of evaluation prompts", type=str,
                                  unset="every third prompt of the shapes test split (23; trainer.eval scores all 69)")
    eval_seeds: int = _f(2, "fixed seeds per evaluation prompt", AT_LEAST_ONE)
    eval_every: int = _f(0, "evaluate (and write a sample grid) every this many iterations; 0 = start/end only",
                         NON_NEGATIVE)
    checkpoint_every: int = _f(20, "checkpoint every this many iterations (and at the end)", AT_LEAST_ONE)
    keep_checkpoints: int = _f(2, "how many checkpoints to keep", AT_LEAST_ONE)
    run_dir: str = _f("runs", "parent folder of run folders")
    name: str | None = _f(None, "run name", type=str, unset="<algo>-<date>-<time>")
    resume: str | None = _f(None, "run folder to resume exactly where its last checkpoint stopped", type=str,
                            unset="a new run")
    export_comfyui: str | None = _f(None, "ComfyUI folder to copy the result into (models/loras or "
                                          "models/diffusion_models)", type=str, unset="no copy")
    sharding: str | None = _f(None, "how several processes share the transformer: ddp (each holds it whole; "
                                    "gradients averaged by DistributedDataParallel) | fsdp (FSDP2: each holds 1/N of "
                                    "every weight, gradient and optimizer state) | hsdp (FSDP2 sharded within each "
                                    "node, replicated across nodes)", type=str, choices=SHARDINGS,
                              unset="fsdp under an accelerate FSDP config (hsdp with HYBRID_SHARD), else ddp")
    fsdp_offload: bool = _f(False, "FSDP2 / HSDP: keep the shards of weights, gradients and optimizer states in CPU "
                                   "memory")
    stop_grace: float | None = _f(None, "seconds between a scheduler's stop signal and its kill (SLURM --signal lead "
                                        "time; torchrun: 30): a signal then abandons the iteration in flight before its "
                                        "update when it and a checkpoint would not fit, and checkpoints its start",
                                  POSITIVE, type=float, unset="finish the iteration in flight, then checkpoint")
    collective_timeout: float | None = _f(None, "seconds a process waits in a collective for the others before it "
                                                "stops with one line (a stalled or lost peer); keep it above the "
                                                "main process's longest lone work (a checkpoint, the export)",
                                          POSITIVE, type=float, unset="PyTorch's: 600 on NCCL, 1800 on gloo")
    seed: int = _f(0, "seed of prompts, noise, windows and LoRA init")
    device: str = _f("auto", "auto | cpu | cuda | cuda:<index>")

    def validate(self) -> None:
        """Every value in its range and every combination possible, before anything loads."""
        from .launch import resolve_sharding

        sharding, offload = resolve_sharding(self.sharding, self.fsdp_offload)
        if offload:
            import torch
            if not torch.cuda.is_available():
                raise ConfigError("--fsdp-offload moves FSDP2's shards between GPU and CPU memory; without CUDA "
                                  "they live in CPU memory already: drop the flag.")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be ≥ 2: GRPO compares samples within a group (got {self.group_size}).")
        for f in fields(self):
            choices, value = _choices(f), getattr(self, f.name)
            if value is None and f.default is None:  # unset: the algorithm's, model's or run's own
                continue
            if choices is not None and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(map(repr, choices))}, got {getattr(self, f.name)!r}.")
            valid = f.metadata.get("valid")
            if valid is not None and value not in valid:
                raise ConfigError(f"{f.name} must lie in {valid}, got {value} (--{f.name.replace('_', '-')}).")
        self.check_window()
        self.check_files_and_rewards()
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:<index>, got {self.device!r}.")
        if self.attention == "xformers":
            import torch
            if not torch.cuda.is_available():
                raise ConfigError("--attention xformers needs a CUDA GPU; on this machine use --attention sdpa.")
        samples = self.group_size * self.prompts_per_iter
        if self.updates_per_iter < 1 or samples % self.updates_per_iter:
            raise ConfigError(f"updates_per_iter={self.updates_per_iter} must divide the {samples} samples "
                              "of an iteration (group_size × prompts_per_iter).")

    def check_window(self) -> None:
        """The window schedule can be built (a window larger than the schedule fails here, not after loading)."""
        from mixgrpo import WindowSchedule

        WindowSchedule(num_steps=self.steps, size=self.window, strategy=self.window_strategy,
                       shift_interval=self.shift_interval, stride=self.stride, start=self.window_start, seed=self.seed)

    def check_files_and_rewards(self) -> None:
        """Prompt files exist; the reward list parses and its options name what each reward takes."""
        from mixgrpo.rewards.registry import check_reward_options, parse_reward_spec, reward_option_names

        for key in ("prompts", "eval_prompts"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                raise ConfigError(f"{key} file {path} does not exist (a text file with one prompt per line).")
        for name, _ in parse_reward_spec(self.reward):
            reward_option_names(name)  # an unknown name fails here, before anything loads
        check_reward_options(self.reward, self.reward_options)


def _field_types() -> dict[str, type]:
    return {f.name: f.metadata.get("type") or type(default_of(f)) for f in fields(TrainConfig)}


#: keys earlier versions wrote, and the key and value they mean now
LEGACY_KEYS = {"gradient_checkpointing": lambda on: ("checkpointing", "full" if on else "off")}


def with_current_keys(values: dict) -> dict:
    """``values`` with the keys earlier versions wrote (a recipe's or a saved run's) renamed to today's."""
    out = {}
    for key, value in values.items():
        if key in LEGACY_KEYS:
            key, value = LEGACY_KEYS[key](value)
        out.setdefault(key, value)
    return out


def load_yaml(path: str | Path) -> dict:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, found {type(data).__name__}.")
    data = with_current_keys(data)
    known = _field_types()
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown config key(s) {unknown}. Known keys: {', '.join(sorted(known))}.")
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of config keys (flags override it)")
    parser.add_argument("--dry-run", action="store_true", help="check everything that needs no weights (options, "
                        "the launch's split, the run folder, the model folder), print the plan with the memory per "
                        "process, and exit without loading anything")
    add_debug_flag(parser)
    for f in fields(TrainConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        # flags default to None so that a YAML value is only overridden by a flag that was given
        kwargs = {"help": help_text(f), "default": None, "dest": f.name}
        if isinstance(default_of(f), dict):
            parser.add_argument(flag, action="append", metavar=f.metadata.get("metavar", "REWARD.OPTION=VALUE"), **kwargs)
        elif isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(flag, type=_field_types()[f.name], choices=_choices(f), **kwargs)
    # the earlier spelling of --checkpointing full
    parser.add_argument("--gradient-checkpointing", dest="checkpointing", action="store_const", const="full",
                        help=argparse.SUPPRESS)
    return parser


def parse_config(argv=None) -> TrainConfig:
    """Defaults, then ``--config`` YAML, then flags; validated."""
    args = vars(build_parser().parse_args(argv))
    args.pop("debug")
    args.pop("dry_run")
    values = load_yaml(args.pop("config")) if args.get("config") else {}
    flagged_options = parse_reward_options(args.pop("reward_options") or [])
    flagged_model_options = parse_model_options(args.pop("model_options") or [])
    values.update({k: v for k, v in args.items() if v is not None})
    values["reward_options"] = merge_reward_options(values.get("reward_options") or {}, flagged_options)
    if not isinstance(values.get("model_options") or {}, dict):
        raise ConfigError(f"model_options must be a mapping of option: value, got {values['model_options']!r}.")
    values["model_options"] = {**(values.get("model_options") or {}), **flagged_model_options}
    types = _field_types()
    try:
        config = TrainConfig(**{k: _convert(v, types[k]) for k, v in values.items()})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad config value: {error}") from None
    config.validate()
    from .launch import resolve_mixed_precision

    config.mixed_precision = resolve_mixed_precision(config.mixed_precision)
    return config


def _convert(value, kind: type):
    if value is None:
        return None
    return bool(value) if kind is bool else kind(value)


# fields whose "unset" was written as 0 or "" by earlier versions (config.yaml of older runs)
LEGACY_UNSET = {"cfg_scale": 0, "eta": 0, "compression": 0, "solver": "", "dance_first": 0, "prompts": "",
                "eval_prompts": "", "name": "", "resume": "", "export_comfyui": ""}


def saved_config(values: dict, **overrides) -> TrainConfig:
    """The config a run saved in its ``config.yaml`` (older runs' 0 / "" for "unset" read as unset)."""
    values = with_current_keys(values)
    known = _field_types()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"the saved config has unknown key(s) {unknown}; a newer trainer wrote it.")
    values = {k: None if k in LEGACY_UNSET and v == LEGACY_UNSET[k] and not isinstance(v, bool) else v
              for k, v in values.items()}
    return TrainConfig(**{**values, **overrides})


def parse_model_options(items) -> dict:
    """``["guidance=3.5", "negative_prompt=blurry"]`` → ``{"guidance": 3.5, "negative_prompt": "blurry"}``."""
    options = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"model option {item!r} must read option=value, e.g. guidance=3.5.")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        options[key.strip()] = value if isinstance(parsed, (dict, list)) else parsed
    return options


def merge_reward_options(base: dict, override: dict) -> dict:
    """Per reward, the flags' options over the YAML file's."""
    if not isinstance(base, dict):
        raise ConfigError(f"reward_options must be a mapping of reward: {{option: value}}, got {base!r}.")
    merged = {name: dict(values) if isinstance(values, dict) else values for name, values in base.items()}
    for name, values in override.items():
        merged[name] = {**(merged[name] if isinstance(merged.get(name), dict) else {}), **values}
    return merged


def config_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)

"""What an ``accelerate launch`` asked for, read from the environment it sets, checked before anything loads.

``accelerate launch --config_file fsdp2.yaml`` (``distributed_type: FSDP``, ``fsdp_version: 2``)
sets ``ACCELERATE_USE_FSDP=true`` and ``FSDP_*`` variables; the trainer then shards with FSDP2
(:mod:`trainer.processes`), offloading to CPU when ``fsdp_offload_params`` is set. What it cannot
honour stops the launch with one line: DeepSpeed and FSDP version 1. FSDP2 always shards fully
(per transformer block, then the root); the config's wrap policy is not read.
"""

from __future__ import annotations

import os

from .config import ConfigError


def _true(environ, name: str) -> bool:
    from accelerate.utils.environment import str_to_bool  # how accelerate itself reads these flags

    return bool(str_to_bool(environ.get(name) or "false"))


def launch_sharding(environ=os.environ) -> tuple[str | None, bool]:
    """``("fsdp", offload)`` under an accelerate FSDP launch (``"hsdp"`` with ``fsdp_sharding_strategy:
    HYBRID_SHARD``), ``(None, False)`` otherwise."""
    if _true(environ, "ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError("accelerate launch asked for DeepSpeed, which trainer.run does not use: launch with an "
                          "FSDP2 config (trainer/configs/accelerate/fsdp2.yaml) to shard the model, or a DDP one "
                          "(ddp.yaml) to replicate it.")
    if not _true(environ, "ACCELERATE_USE_FSDP"):
        return None, False
    version = environ.get("FSDP_VERSION", "1")
    if version != "2":
        raise ConfigError(f"accelerate launch asked for FSDP version {version}; trainer.run shards with FSDP2: set "
                          "fsdp_version: 2 in the accelerate config (see trainer/configs/accelerate/fsdp2.yaml).")
    hybrid = environ.get("FSDP_SHARDING_STRATEGY", "").upper() in ("HYBRID_SHARD", "4")  # accelerate's name or number
    return "hsdp" if hybrid else "fsdp", _true(environ, "FSDP_OFFLOAD_PARAMS")


def resolve_sharding(requested: str | None, offload: bool, environ=os.environ) -> tuple[str, bool]:
    """The run's sharding and offload: the flags' (``--sharding``, ``--fsdp-offload``) or the launch's."""
    launched, launch_offload = launch_sharding(environ)
    if requested is not None and launched is not None and requested != launched:
        raise ConfigError(f"--sharding {requested} contradicts the accelerate launch, which asked for {launched}; "
                          "drop the flag or launch without the FSDP config.")
    sharding = requested or launched or "ddp"
    offload = offload or launch_offload
    if offload and sharding not in ("fsdp", "hsdp"):
        raise ConfigError("--fsdp-offload keeps FSDP2's shards in CPU memory; it needs --sharding fsdp.")
    return sharding, offload


def resolve_mixed_precision(requested: str, environ=os.environ) -> str:
    """The run's mixed precision: the flag's, or, left at ``no``, the accelerate launch's (its config's
    ``mixed_precision`` or ``--mixed_precision``, which ``accelerate launch`` passes as
    ``ACCELERATE_MIXED_PRECISION``). Two different lower precisions are a contradiction."""
    launched = environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if launched not in ("bf16", "fp16"):
        return requested
    if requested == "no":
        return launched
    if requested != launched:
        raise ConfigError(f"--mixed-precision {requested} contradicts the accelerate launch, which asked for "
                          f"{launched}; drop the flag or change mixed_precision in the accelerate config.")
    return requested

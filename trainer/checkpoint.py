"""Checkpoints: trainable weights (safetensors), optimizer and run state, written atomically.

A checkpoint is a folder ``checkpoints/iter-000040/`` holding ``weights.safetensors`` (the trainable
parameters by name), ``optimizer.pt`` and ``state.json`` (iteration, prompt cursor, window-schedule
state, metrics so far) plus ``rng.pt``. It is written under a temporary name and renamed into place,
so a killed run never leaves a half-written checkpoint; only the newest ``keep`` are kept.
``.pt`` files are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("iter-*") if p.is_dir() and not p.name.endswith(".tmp"))


def save_checkpoint(run_dir: Path, iteration: int, params: dict[str, torch.Tensor], optimizer, state: dict,
                    keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    final = root / f"iter-{iteration:06d}"
    tmp = root / f"iter-{iteration:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in params.items()}, str(tmp / "weights.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    for file in tmp.iterdir():  # make the bytes durable before the rename publishes them
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, params: dict[str, torch.Tensor], optimizer) -> dict:
    """Restore weights and optimizer in place; returns the saved run state."""
    weights = load_file(str(path / "weights.safetensors"))
    missing = set(params) - set(weights)
    if missing:
        raise ValueError(f"checkpoint {path} lacks trained weights {sorted(missing)[:3]}…; "
                         "was it written by a run with other LoRA / fine-tuning settings?")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name].to(param.device, param.dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return json.loads((path / "state.json").read_text())

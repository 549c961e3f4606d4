"""Checkpoints: trainable weights (safetensors), optimizer and run state, written atomically.

A checkpoint is a folder ``checkpoints/iter-000040/`` holding ``weights.safetensors`` (the trainable
parameters by name), ``optimizer.pt`` and ``state.json`` (iteration, prompt cursor, window-schedule
state, metrics so far) plus ``rng.pt``. It is written under a temporary name and renamed into place,
so a killed run never leaves a half-written checkpoint; only the newest ``keep`` are kept.
``.pt`` files are read back with ``torch.load(weights_only=True)``.

A checkpoint can still be damaged after it was written (a full disk, a copy cut short, a bad
sync between machines). :func:`read_latest_checkpoint` reads the newest one whole, checking the
safetensors header, every trained weight, the optimizer, RNG and state files, before anything is
restored, and falls back to the previous one with a warning that names the damaged folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mixgrpo.cli import one_line
from mixgrpo.errors import ResumeError
from mixgrpo.run_folder import RunFolder


def save_checkpoint(run_dir: Path, iteration: int, weights: dict[str, torch.Tensor], optimizer_state: dict,
                    state: dict, keep: int = 2) -> Path:
    """Write ``checkpoints/iter-N/`` atomically: whole ``weights`` by name, the optimizer state, RNG and run state."""
    folder = RunFolder(run_dir)
    final = folder.checkpoint(iteration)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    for file in tmp.iterdir():  # make the bytes durable before the rename publishes them
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in folder.checkpoint_dirs()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


class CheckpointDamaged(ResumeError):
    """A checkpoint folder that cannot be restored; the message says which file and why."""


STATE_KEYS = ("iteration", "prompt_cursor", "windows", "history")


def read_checkpoint(path: Path, params: dict[str, torch.Tensor], optimizer) -> dict:
    """Everything in the checkpoint ``path``, checked against the run's ``params`` and ``optimizer``.

    Returns ``{"weights", "optimizer", "rng", "state"}``; raises :class:`CheckpointDamaged` when a
    file is missing, unreadable, or does not match (a missing weight, another parameter count).
    """
    def damaged(file: str, why: str) -> CheckpointDamaged:
        return CheckpointDamaged(f"{path / file}: {why}")

    def read(file: str, reader):
        if not (path / file).is_file():
            raise damaged(file, "missing")
        try:
            return reader(path / file)
        except Exception as error:  # any failure to parse is damage, whatever the library raises
            raise damaged(file, f"unreadable ({type(error).__name__}: {one_line(error)[:160]})") from None

    weights = read("weights.safetensors", lambda f: load_file(str(f)))
    missing = sorted(set(params) - set(weights))
    if missing:
        raise damaged("weights.safetensors", f"lacks {len(missing)} trained weight(s), e.g. {missing[0]}; a run with "
                                              "other LoRA / fine-tuning settings wrote it, or it was cut short")
    for name, param in params.items():
        if weights[name].shape != param.shape:
            raise damaged("weights.safetensors", f"{name} has shape {tuple(weights[name].shape)}, "
                                                  f"the model's is {tuple(param.shape)}")
    saved = read("optimizer.pt", lambda f: torch.load(f, weights_only=True))
    expected = [len(group["params"]) for group in optimizer.param_groups]
    found = [len(group.get("params", ())) for group in saved.get("param_groups", ())] if isinstance(saved, dict) else []
    if found != expected:
        raise damaged("optimizer.pt", f"holds parameter groups of sizes {found}, the run's are {expected}")
    rng = read("rng.pt", lambda f: torch.load(f, weights_only=True))
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor):
        raise damaged("rng.pt", "holds no torch RNG state")
    state = read("state.json", lambda f: json.loads(f.read_text()))
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        raise damaged("state.json", f"lacks one of the keys {', '.join(STATE_KEYS)}")
    return {"weights": weights, "optimizer": saved, "rng": rng["torch"], "state": state}


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_latest_checkpoint(run_dir: Path, params: dict[str, torch.Tensor], optimizer, warn=_warn) -> dict | None:
    """The newest checkpoint of ``run_dir`` that reads whole (None when the run has none).

    Each damaged one is reported through ``warn`` and skipped; when every one is damaged, a
    :class:`CheckpointDamaged` lists them all.
    """
    folders = RunFolder(run_dir).checkpoint_dirs()
    problems = []
    for folder in reversed(folders):
        try:
            content = read_checkpoint(folder, params, optimizer)
        except CheckpointDamaged as error:
            problems.append(str(error))
            warn(f"warning: checkpoint {folder} is damaged ({error}); trying the previous one.")
            continue
        return content | {"path": folder}
    if problems:
        raise CheckpointDamaged(f"no usable checkpoint in {Path(run_dir) / 'checkpoints'}: {'; '.join(problems)}. "
                                f"Start a new run, or restore a good copy of one of these folders.")
    return None


def restore_checkpoint(content: dict, module: torch.nn.Module, optimizer) -> dict:
    """Copy what :func:`read_checkpoint` read into ``module``'s trained weights, the optimizer and the RNG.

    Weights and optimizer state are stored whole and by parameter name, so any number of
    processes, sharded or not, restores them (under FSDP2 each process keeps its own shards).
    An optimizer state keyed by position (written by earlier versions) loads as it was saved.
    """
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(module, content["weights"], options=options)
    saved = content["optimizer"]
    if all(isinstance(key, int) for group in saved["param_groups"] for key in group["params"]):
        optimizer.load_state_dict(saved)
    else:
        set_optimizer_state_dict(module, optimizer, saved, options=options)
    torch.set_rng_state(content["rng"])
    return content["state"]

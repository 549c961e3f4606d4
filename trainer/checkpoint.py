"""Checkpoints: trainable weights (safetensors), optimizer and run state, written atomically.

A checkpoint is a folder ``checkpoints/iter-000040/`` holding ``weights.safetensors`` (the trainable
parameters by name), ``optimizer.pt`` and ``state.json`` (iteration, prompt cursor, window-schedule
state, metrics so far) plus ``rng.pt``, and with ``--pipeline one-step-off`` ``pending.safetensors``
(the batch the next iteration trains on, :mod:`trainer.one_step_off`). It is written under a
temporary name and renamed into place, so a killed run never leaves a half-written checkpoint; only
the newest ``keep`` are kept.
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

from .one_step_off import check_pending_tensors


def save_checkpoint(run_dir: Path, iteration: int, weights: dict[str, torch.Tensor], optimizer_state: dict,
                    state: dict, keep: int = 2, pending: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``checkpoints/iter-N/`` atomically: whole ``weights`` by name, the optimizer state, RNG, run state
    and the ``pending`` batch's tensors."""
    folder = RunFolder(run_dir)
    final = folder.checkpoint(iteration)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    return _publish(tmp, final, state, folder, keep, pending)


def _publish(tmp: Path, final: Path, state: dict, folder: RunFolder, keep: int, pending: dict | None) -> Path:
    """Add the RNG, run state and pending batch to ``tmp``, make every byte durable, rename it to ``final``, drop
    old ones."""
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    if pending is not None:
        save_file({k: v.contiguous() for k, v in pending.items()}, str(tmp / PENDING))
    (tmp / "state.json").write_text(json.dumps(state))
    for file in tmp.rglob("*"):  # make the bytes durable before the rename publishes them
        if file.is_file():
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
SHARDS = "shards"  # the torch.distributed.checkpoint folder of a sharded checkpoint
PENDING = "pending.safetensors"  # one-step-off: the batch the next iteration trains on


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

    if (path / SHARDS).is_dir():
        content = {"shards": path / SHARDS, **_read_shard_index(path, params, damaged)}
    else:
        content = _read_whole(path, params, optimizer, read, damaged)
    rng = read("rng.pt", lambda f: torch.load(f, weights_only=True))
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor):
        raise damaged("rng.pt", "holds no torch RNG state")
    state = read("state.json", lambda f: json.loads(f.read_text()))
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        raise damaged("state.json", f"lacks one of the keys {', '.join(STATE_KEYS)}")
    if state.get("pending") is not None:
        tensors = read(PENDING, lambda f: load_file(str(f)))
        problem = check_pending_tensors(state["pending"], tensors)
        if problem:
            raise damaged(PENDING, problem)
        state["pending"]["tensors"] = tensors
    return content | {"rng": rng["torch"], "state": state}


def _read_whole(path: Path, params, optimizer, read, damaged) -> dict:
    """``weights.safetensors`` and ``optimizer.pt``, checked against the run's parameters and optimizer."""
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
    return {"weights": weights, "optimizer": saved}


def _read_shard_index(path: Path, params, damaged) -> dict:
    """The sharded checkpoint's index (``.metadata``): every trained weight must be in it."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        stored = FileSystemReader(str(path / SHARDS)).read_metadata().state_dict_metadata
    except Exception as error:  # any failure to parse is damage, whatever the library raises
        raise damaged(SHARDS, f"unreadable index ({type(error).__name__}: {one_line(error)[:160]})") from None
    missing = sorted(name for name in params if f"model.{name}" not in stored)
    if missing:
        raise damaged(SHARDS, f"lacks {len(missing)} trained weight(s), e.g. {missing[0]}; a run with other LoRA / "
                              "fine-tuning settings wrote it, or it was cut short")
    return {}


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_latest_checkpoint(run_dir: Path, params: dict[str, torch.Tensor], optimizer, warn=_warn,
                           restore=None, gather=lambda local: [local]) -> dict | None:
    """The newest checkpoint of ``run_dir`` that reads whole (None when the run has none).

    Each damaged one is reported through ``warn`` and skipped; when every one is damaged, a
    :class:`CheckpointDamaged` lists them all. With ``restore`` (``content → run state``) each
    candidate is also restored, and one that fails to (a sharded checkpoint's shard file cut short,
    found only as it is read) counts as damaged too: the older one then overwrites all it wrote.

    Several processes agree through ``gather`` (``local → [every process's local]``, rank order; every
    process calls it): they try the main process's list of checkpoints, newest first, and a candidate
    is taken only when it read on every process (then restored, and checked again); one that any
    process could not read is skipped by all, so all resume from the same iteration.
    """
    run = RunFolder(run_dir)
    folders = [run.checkpoints / name for name in gather([f.name for f in run.checkpoint_dirs()])[0]]
    problems = []
    for folder in reversed(folders):
        content = _agreed(gather, lambda: read_checkpoint(folder, params, optimizer))
        if isinstance(content, dict) and restore is not None:
            content = _agreed(gather, lambda: content | {"state": restore(content)})
        if not isinstance(content, dict):
            problems.append(content)
            warn(f"warning: checkpoint {folder} is damaged ({content}); trying the previous one.")
            continue
        return content | {"path": folder}
    if problems:
        raise CheckpointDamaged(f"no usable checkpoint in {Path(run_dir) / 'checkpoints'}: {'; '.join(problems)}. "
                                f"Start a new run, or restore a good copy of one of these folders.")
    return None


def _agreed(gather, attempt) -> dict | str:
    """``attempt()``'s result when it succeeded on every process, else what went wrong (the first process's
    :class:`CheckpointDamaged`, with its rank when there are several processes)."""
    try:
        result, problem = attempt(), None
    except CheckpointDamaged as error:
        result, problem = None, str(error)
    problems = gather(problem)
    failed = [(rank, why) for rank, why in enumerate(problems) if why is not None]
    if not failed:
        return result
    rank, why = failed[0]
    return why if len(problems) == 1 else f"on process {rank}: {why}"


def restore_checkpoint(content: dict, module: torch.nn.Module, optimizer) -> dict:
    """Copy what :func:`read_checkpoint` read into ``module``'s trained weights, the optimizer and the RNG.

    Weights and optimizer state are stored whole and by parameter name, so any number of
    processes, sharded or not, restores them (under FSDP2 each process keeps its own shards).
    An optimizer state keyed by position (written by earlier versions) loads as it was saved.
    """
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    if "shards" in content:
        _load_shards(content["shards"], module, optimizer)
        torch.set_rng_state(content["rng"])
        return content["state"]
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(module, content["weights"], options=options)
    saved = content["optimizer"]
    if all(isinstance(key, int) for group in saved["param_groups"] for key in group["params"]):
        optimizer.load_state_dict(saved)
    else:
        set_optimizer_state_dict(module, optimizer, saved, options=options)
    torch.set_rng_state(content["rng"])
    return content["state"]


def sharded_tensors(module: torch.nn.Module, optimizer) -> dict:
    """What a sharded checkpoint holds: this process's shards of the trained weights and their AdamW state."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    options = StateDictOptions(ignore_frozen_params=True)
    return {"model": get_model_state_dict(module, options=options),
            "optimizer": get_optimizer_state_dict(module, optimizer, options=options)}


def save_sharded_checkpoint(run_dir: Path, iteration: int, module: torch.nn.Module, optimizer, state: dict,
                            processes, keep: int = 2, pending: dict[str, torch.Tensor] | None = None) -> Path:
    """Every process writes its own shards (``torch.distributed.checkpoint``) into ``iter-N.tmp/shards``; the
    main process adds RNG and run state and renames the folder into place once all have written."""
    import torch.distributed.checkpoint as dcp

    folder = RunFolder(run_dir)
    final = folder.checkpoint(iteration)
    tmp = final.with_name(final.name + ".tmp")
    if processes.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    processes.barrier()
    with processes.guard():
        dcp.save(sharded_tensors(module, optimizer), checkpoint_id=str(tmp / SHARDS))
    if processes.is_main:
        _publish(tmp, final, state, folder, keep, pending)
    processes.barrier()
    return final


def _load_shards(shards: Path, module: torch.nn.Module, optimizer) -> None:
    """Read a sharded checkpoint into ``module`` and ``optimizer``, resharded to however they are split now."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception

    tensors = sharded_tensors(module, optimizer)
    try:
        dcp.load(tensors, checkpoint_id=str(shards))
    except CheckpointException as error:  # a shard file cut short or missing: each process says what it hit
        rank, failure = next(iter(error.failures.items()))
        cause = failure[0] if isinstance(failure, tuple) else failure
        raise CheckpointDamaged(f"{shards}: unreadable on process {rank} ({type(cause).__name__}: "
                                f"{one_line(cause)[:160]})") from None
    except Exception as error:
        raise CheckpointDamaged(f"{shards}: unreadable ({type(error).__name__}: {one_line(error)[:160]})") from None
    options = StateDictOptions(ignore_frozen_params=True, strict=False)  # the index was checked: nothing lacks
    set_model_state_dict(module, tensors["model"], options=options)
    set_optimizer_state_dict(module, optimizer, tensors["optimizer"], options=options)

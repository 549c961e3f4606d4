"""``python -m trainer.run --window 4``: MixGRPO / Flash / DanceGRPO fine-tuning, defaults on the embedded model.

Writes ``runs/<name>/`` (:mod:`mixgrpo.run_folder`): ``config.yaml``, ``metrics.jsonl``, TensorBoard
events, ``plots/training.png``, sample grids in ``samples/``, ``checkpoints/`` (resumable with
``--resume runs/<name>``), and the result in ``lora/`` (or ``transformer/`` with
``--full-finetune``), plus ``eval.json`` with the held-out reward before and after.

This module is the command line only; the run itself reads top to bottom in :func:`trainer.loop.train`.
"""

from __future__ import annotations

import os
import sys
import time

from mixgrpo.cli import USER_ERROR_EXIT, run_command
from mixgrpo.errors import MixGRPOError
from mixgrpo.run_folder import RunFolder

from .config import ConfigError, TrainConfig, parse_config, saved_config


def run_folder(cfg: TrainConfig) -> tuple[RunFolder, TrainConfig]:
    """A new run's folder under ``run_dir``, or the resumed run's with its saved config."""
    if cfg.resume:
        folder = RunFolder(cfg.resume)
        if not folder.config_file.is_file():
            raise ConfigError(f"--resume {folder.path}: no config.yaml there; pass the folder of an earlier run.")
        return folder, saved_config(folder.read_config(), resume=str(folder.path))
    name = cfg.name or f"{cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    return RunFolder(os.path.join(cfg.run_dir, name)), cfg


def main(argv=None) -> dict:
    """Parse, pick the run folder and train; errors propagate (the command's boundary reports them)."""
    try:
        return _main(argv)
    except ConfigError:
        if int(os.environ.get("LOCAL_RANK", "0")) > 0:  # every process of a launch finds it: one per node says it
            raise SystemExit(USER_ERROR_EXIT) from None
        raise
    except MixGRPOError as error:  # anything else is this process's own, wherever it happened
        from .processes import own_error

        raise own_error(error, int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def _main(argv) -> dict:
    from .loop import train

    cfg = parse_config(argv)
    if cfg.model == "embedded":  # the embedded model needs no hub: never ask one
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder, cfg = run_folder(cfg)
    if "--dry-run" in (sys.argv[1:] if argv is None else argv):
        from .dry_run import dry_run
        return dry_run(cfg, folder)
    return train(cfg, folder)


if __name__ == "__main__":
    sys.exit(run_command(main))

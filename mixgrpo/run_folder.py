"""The run folder ``runs/<name>/``: its one owner. The trainer writes through it; the monitor node and the benchmarks read.

=========================  ==========================================================================
``config.yaml``            the run's whole config (what ``--resume`` reads back)
``metrics.jsonl``          one JSON row per training iteration (``iteration``, ``reward_mean``, …)
``eval.json``              ``{"summary": …, "evaluations": [{"iteration", "mean", "per_reward", …}]}``
``samples/<tag>.png``      sample grids: ``iter-000020.png`` per evaluation, ``before_after.png``
``checkpoints/iter-N/``    resumable checkpoints (written by ``trainer/checkpoint.py``), newest last
``plots/training.png``     reward, window and timing curves
``tensorboard/``           TensorBoard event files
``lora/`` | ``transformer/``  the result
=========================  ==========================================================================
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .errors import MixGRPOError


class RunFolderError(MixGRPOError, ValueError):
    """A folder that is not (or not yet) what the caller needs: no config, no metrics, no result."""


def grid_tag(iteration: int) -> str:
    """The sample grid of the evaluation after ``iteration`` iterations: ``iter-000020``."""
    return f"iter-{iteration:06d}"


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    config_file = property(lambda self: self.path / "config.yaml")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    eval_file = property(lambda self: self.path / "eval.json")
    samples = property(lambda self: self.path / "samples")
    checkpoints = property(lambda self: self.path / "checkpoints")
    training_plot = property(lambda self: self.path / "plots" / "training.png")
    tensorboard = property(lambda self: self.path / "tensorboard")
    lora = property(lambda self: self.path / "lora")
    transformer = property(lambda self: self.path / "transformer")

    # -- config ----------------------------------------------------------------------------
    def write_config(self, values: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(values, sort_keys=False))

    def read_config(self) -> dict:
        if not self.config_file.is_file():
            raise RunFolderError(f"{self.path} holds no config.yaml; pass the folder of a run written by trainer.run.")
        return yaml.safe_load(self.config_file.read_text()) or {}

    # -- metrics ---------------------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        """Every iteration's row; a row cut short by a kill mid-write is left out."""
        if not self.metrics_file.is_file():
            raise RunFolderError(f"{self.path} is not a trainer run folder (no metrics.jsonl). Pass runs/<name> of "
                                 "`python -m trainer.run`.")
        rows = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def rewrite_metrics(self, rows: list[dict]) -> None:
        """Keep exactly ``rows`` (a resumed run drops what the killed attempt wrote after its checkpoint)."""
        self.metrics_file.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def metrics_writer(self) -> "MetricsWriter":
        return MetricsWriter(self.metrics_file)

    # -- evaluations -----------------------------------------------------------------------
    def write_evaluations(self, summary: dict, evaluations: list[dict]) -> None:
        self.eval_file.write_text(json.dumps({"summary": summary, "evaluations": evaluations}, indent=2))

    def read_evaluations(self) -> list[dict]:
        """The held-out evaluations so far ([] before the run finished: they are written at the end)."""
        if not self.eval_file.is_file():
            return []
        return json.loads(self.eval_file.read_text()).get("evaluations", [])

    def read_summary(self) -> dict:
        if not self.eval_file.is_file():
            raise RunFolderError(f"{self.path} holds no eval.json: the run has not finished.")
        return json.loads(self.eval_file.read_text())["summary"]

    # -- sample grids and checkpoints ------------------------------------------------------
    def sample_grid(self, tag: str) -> Path:
        return self.samples / f"{tag}.png"

    def latest_grid(self) -> Path | None:
        grids = sorted(self.samples.glob("*.png"), key=lambda p: p.stat().st_mtime)
        return grids[-1] if grids else None

    def checkpoint(self, iteration: int) -> Path:
        return self.checkpoints / f"iter-{iteration:06d}"

    def checkpoint_dirs(self) -> list[Path]:
        """The finished checkpoints, oldest first (a ``.tmp`` folder is one being written)."""
        return sorted(p for p in self.checkpoints.glob("iter-*") if p.is_dir() and not p.name.endswith(".tmp"))


#: the columns of a ``metrics.jsonl`` row: the one schema the trainer writes and the plots, monitor and benchmarks read
METRICS_COLUMNS = {
    "iteration": "iterations done (1 for the first)",
    "world_size": "training processes", "sharding": "none | ddp | fsdp",
    "window_start": "the window's left step l", "nfe": "old-policy network evaluations per trajectory",
    "network_evals": "rows the transformer evaluated in the rollout, every process together",
    "reward": "each reward's mean raw score over the valid samples", "reward_mean": "their weighted mean",
    "advantages": "every sample's advantage (NaN: its reward failed)", "failed_samples": "samples without a reward",
    "rollout_s": "the rollout (with the scorer's overlapped work beside it)",
    "reward_s": "the scoring the rollout did not hide: waiting for the scorer, the gather, the advantages",
    "scorer_s": "the scorer stage's own clock: decoding and scoring, wherever it ran",
    "update_s": "the PPO updates", "seconds": "the whole iteration",
    "first_max_abs_log_ratio": "max |log r| on the first micro-batch: the on-policy numerics bar",
    "clip_fraction": "share of clipped (sample, step) terms", "kl": "mean KL to the reference",
    "grad_norm": "largest gradient norm before clipping", "updates": "optimizer steps taken",
    "peak_memory_gib": "peak GPU memory (GPU runs only)", "compile_s": "compile time in this iteration (--compile only)",
    "updated_batch": "one-step-off: the iteration whose batch the update trained on (0: none yet)",
    "importance_ratio_mean": "one-step-off: mean π_prox / π_behaviour over this process's rows (untruncated)",
    "importance_ratio_max": "one-step-off: its largest value",
}
OPTIONAL_METRICS = {"peak_memory_gib", "compile_s", "updated_batch", "importance_ratio_mean", "importance_ratio_max"}


def check_metrics_row(row: dict) -> None:
    """A row that strays from :data:`METRICS_COLUMNS` (a column missing, or one no reader knows) is an error."""
    unknown = sorted(set(row) - set(METRICS_COLUMNS))
    missing = sorted(set(METRICS_COLUMNS) - OPTIONAL_METRICS - set(row))
    if unknown or missing:
        raise RunFolderError(f"a metrics row strays from METRICS_COLUMNS in mixgrpo/run_folder.py: unknown {unknown}, "
                             f"missing {missing}")


class MetricsWriter:
    """Appends rows to ``metrics.jsonl``, each checked against the schema and flushed as it is written (the
    monitor reads it live)."""

    def __init__(self, path: Path):
        self.handle = Path(path).open("a")

    def write(self, row: dict) -> None:
        check_metrics_row(row)
        self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()

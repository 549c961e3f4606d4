"""Training Run Monitor: reward curves, window positions and the latest sample grid of a trainer run folder."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mixgrpo.plots import plot_training

from ._api import CATEGORY, io, png_to_image, ui


def read_run(folder: Path) -> tuple[list[dict], list[dict]]:
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{folder} is not a trainer run folder (no metrics.jsonl). Pass runs/<name> of "
                                "`python -m trainer.run`.")
    history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    evaluations = []
    if (folder / "eval.json").is_file():
        evaluations = json.loads((folder / "eval.json").read_text()).get("evaluations", [])
    return history, evaluations


class TrainingRunMonitor(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MixGRPOTrainingRunMonitor",
            display_name="Training Run Monitor",
            category=f"{CATEGORY}/training",
            is_output_node=True,
            description="Reads a trainer run folder (runs/<name>) and plots its rewards, window and timing, "
                        "with the latest sample grid.",
            inputs=[io.String.Input("run_folder", default="runs/", tooltip="Folder written by python -m trainer.run.")],
            outputs=[io.Image.Output(display_name="curves"), io.Image.Output(display_name="latest_samples"),
                     io.String.Output(display_name="summary")],
        )

    @classmethod
    def fingerprint_inputs(cls, run_folder):
        metrics = Path(run_folder) / "metrics.jsonl"
        return metrics.stat().st_mtime if metrics.is_file() else 0  # re-run when the run writes new metrics

    @classmethod
    def execute(cls, run_folder) -> io.NodeOutput:
        folder = Path(run_folder)
        history, evaluations = read_run(folder)
        if not history:
            raise ValueError(f"{folder}: the run has not finished an iteration yet.")
        with tempfile.TemporaryDirectory() as tmp:
            curves = png_to_image(plot_training(history, Path(tmp) / "curves.png", evaluations))
        grids = sorted((folder / "samples").glob("*.png"), key=lambda p: p.stat().st_mtime)
        samples = png_to_image(grids[-1]) if grids else curves
        last = history[-1]
        summary = (f"{folder.name}: iteration {last['iteration']}, reward {last['reward_mean']:.4f}, "
                   f"window start {last['window_start']}, {last['seconds']:.2f} s/iteration")
        return io.NodeOutput(curves, samples, summary, ui=ui.PreviewText(summary))

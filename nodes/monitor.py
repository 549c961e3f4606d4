"""Training Run Monitor: reward curves, window positions and the latest sample grid of a trainer run folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mixgrpo.plots import plot_training
from mixgrpo.run_folder import RunFolder

from ._api import CATEGORY, io, png_to_image, ui


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
        metrics = RunFolder(run_folder).metrics_file
        return metrics.stat().st_mtime if metrics.is_file() else 0  # re-run when the run writes new metrics

    @classmethod
    def execute(cls, run_folder) -> io.NodeOutput:
        folder = RunFolder(run_folder)
        history, evaluations = folder.read_metrics(), folder.read_evaluations()
        if not history:
            raise ValueError(f"{folder}: the run has not finished an iteration yet.")
        with tempfile.TemporaryDirectory() as tmp:
            curves = png_to_image(plot_training(history, Path(tmp) / "curves.png", evaluations))
        grid = folder.latest_grid()
        samples = png_to_image(grid) if grid else curves
        last = history[-1]
        summary = (f"{folder.name}: iteration {last['iteration']}, reward {last['reward_mean']:.4f}, "
                   f"window start {last['window_start']}, {last['seconds']:.2f} s/iteration")
        return io.NodeOutput(curves, samples, summary, ui=ui.PreviewText(summary))

"""Sliding-Window Visualiser: the σ schedule of one sampling plan, and the window over training iterations."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from mixgrpo.algorithm.algorithms import algorithm_names, get_algorithm
from mixgrpo.algorithm.plan import build_plan
from mixgrpo.plots import plot_sampling_plan, plot_window_positions
from mixgrpo.algorithm.windows import WindowSchedule, strategy_names

from ._api import CATEGORY, io, png_to_image, ui

class SlidingWindowVisualiser(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MixGRPOWindowVisualiser",
            display_name="Sliding-Window Visualiser",
            category=f"{CATEGORY}/visualise",
            is_output_node=True,
            description="Plots the σ schedule with its SDE, ODE and compressed regions (and NFE), and which "
                        "steps a window strategy trains at each iteration.",
            inputs=[
                io.Combo.Input("algorithm", options=list(algorithm_names()), default="mixgrpo"),
                io.Int.Input("steps", default=25, min=2, max=200),
                io.Float.Input("shift", default=3.0, min=0.01, max=100.0, step=0.01),
                io.Int.Input("window_size", default=4, min=1, max=199),
                io.Int.Input("window_start", default=0, min=0, max=199, tooltip="Window of the plotted plan."),
                io.Combo.Input("strategy", options=list(strategy_names()), default="progressive"),
                io.Int.Input("shift_interval", default=25, min=1, max=10000, tooltip="Iterations per window move (τ)."),
                io.Int.Input("stride", default=1, min=0, max=100, tooltip="Steps per window move (s)."),
                io.Int.Input("iterations", default=300, min=1, max=100000),
                io.Int.Input("strategy_seed", default=0, min=0, max=2**31 - 1, tooltip="For the random strategy."),
            ],
            outputs=[io.Image.Output(display_name="schedule"), io.Image.Output(display_name="windows")],
        )

    @classmethod
    def execute(cls, algorithm, steps, shift, window_size, window_start, strategy, shift_interval, stride,
                iterations, strategy_seed) -> io.NodeOutput:
        plan = build_plan(algorithm, num_steps=steps, shift=shift, window_start=window_start, window_size=window_size)
        strategy = get_algorithm(algorithm).strategy(strategy)
        schedule = WindowSchedule(num_steps=steps, size=window_size, strategy=strategy,
                                  shift_interval=shift_interval, stride=stride, seed=strategy_seed)
        with tempfile.TemporaryDirectory() as tmp:
            plan_png = plot_sampling_plan(plan, Path(tmp) / "plan.png",
                                          title=f"{algorithm}: {plan.num_steps} steps, NFE {plan.nfe}")
            windows_png = plot_window_positions(schedule.lefts(iterations), window_size, steps,
                                                Path(tmp) / "windows.png",
                                                title=f"{strategy} window of {window_size}, τ={shift_interval}, s={stride}")
            first, second = png_to_image(plan_png), png_to_image(windows_png)
        preview = torch.cat([first, second]) if first.shape == second.shape else first
        return io.NodeOutput(first, second, ui=ui.PreviewImage(preview, cls=cls))

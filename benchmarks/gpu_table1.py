"""Table 1 through the trainer's own command on FLUX.1-dev's architecture, run-averaged, side by side from one run.

    python -m benchmarks.gpu_table1 --out benchmarks/results/gpu_table1.md    # CUDA: flux-dev, 512² and 720²
    python -m benchmarks.gpu_table1 --preset tiny --device cpu --resolutions 64 --group 4 --micro-batch 4 \\
        --lora-rank 4 --no-compile --places 3                                   # the same code path, tiny

Each row is one ``python -m trainer.run --model <folder>`` on the preset's random-weight pipeline,
saved once as a diffusers folder (bf16 safetensors on CUDA), with ``--compile`` and
``--checkpointing auto`` unless told otherwise, the same flags on every row:

- DanceGRPO 25/14 (SDE at every step, 14 random steps trained per sample);
- MixGRPO (progressive window of 4 on 25 steps);
- MixGRPO-Flash (the same window, DPM-Solver++(2M) with fewer steps after it);
- MixGRPO-Flash* (the window frozen at step 0, 8 steps in all).

**Run-averaged.** The schedule is the paper's run: 300 iterations, τ = 25, 25 steps, window 4, so the
progressive window sits at l = 0, 1, …, 11 for 25 iterations each. A row whose window moves starts
with one warm-up iteration at the window's last place (l = T − 1 − w, where both the shared trunk's
and the branches' shapes run, so both compile), rolls back to l = 0, and then times ``--places``
iterations with τ = 1: l = 0 … places − 1, once each. Their mean weighs every place by its share of
that run. DanceGRPO and Flash* do not depend on l; they time ``--constant-iterations`` iterations
after one warm-up. Seconds per iteration leave out the compile time the trainer logs
(``compile_s``); a timed iteration that compiled again shows in the "recompile s" column.

**FLOP utilisation**, with ``F`` one forward of one sample (:func:`benchmarks.gpu_flux.forward_flops`)
and ``k/B`` the share of blocks the chosen checkpointing recomputes::

    MFU = (network_evals · F + trained_rows · 2F) / seconds / peak
    HFU = (network_evals · F + trained_rows · (2 + k/B)·F) / seconds / peak

A trained row costs its forward and the backward to the activations (about another ``F``; the base
weights are frozen and LoRA's own gradients are < 1 %): the model's FLOPs. Recomputation under
checkpointing is work the hardware does but the model does not need, so it counts in HFU only.
``peak`` is the GPU's dense bf16 rate.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks import gpu_cli, gpu_flux, write_table_file
from mixgrpo.cli import add_debug_flag, run_command
from mixgrpo.models.checkpointing import checkpointed_count

STEPS, WINDOW = 25, 4
ROWS = (  # (label, algorithm, whether its cost depends on the window's place)
    ("DanceGRPO 25/14", "dancegrpo", False),
    ("MixGRPO", "mixgrpo", True),
    ("MixGRPO-Flash", "flash", True),
    ("MixGRPO-Flash*", "flash_star", False),
)
AUTO_LINE = re.compile(r"checkpointing: auto → (\w+)")


def run_row(args, algo: str, moves: bool, folder: Path, work: Path) -> tuple[list[dict], str]:
    """One ``python -m trainer.run`` (the same flags on every row but the algorithm and its schedule): its metrics
    rows and the checkpointing mode it used."""
    name = f"{algo}-{args.resolution}"
    iterations = 1 + (args.places if moves else args.constant_iterations)
    flags = gpu_cli.cli_flags(args, folder, work, name, algo, iterations, args.checkpointing)
    flags += ["--eval-every", "0", "--compile" if args.compile else "--no-compile"]
    flags += ["--window-start", str(STEPS - 1 - WINDOW), "--shift-interval", "1"] if moves else []
    flags += ["--batch-transitions"] if args.batch_transitions else []
    print(f"{algo} at {args.resolution}²: trainer.run {' '.join(flags)}", flush=True)
    history, stdout = gpu_cli.run_trainer(flags, work, name, args.row_timeout)
    chosen = AUTO_LINE.search(stdout)
    return history, chosen.group(1) if chosen else args.checkpointing


def summarise(args, label: str, algo: str, history: list[dict], mode: str, blocks: int, f_fwd: float,
              peak_rate: float | None) -> dict:
    """One table row from a run's metrics: the warm-up left out, the timed iterations averaged."""
    warm, timed = history[0], history[1:]
    n = len(timed)

    def mean(key: str) -> float:
        return sum(r[key] for r in timed) / n

    seconds = sum(r["seconds"] - r.get("compile_s", 0.0) for r in timed) / n
    trained = gpu_flux.trained_rows(algo, WINDOW, STEPS, args.group, 0.6)
    recomputed = checkpointed_count(mode, blocks) / blocks
    evals = mean("network_evals")
    model_flops = evals * f_fwd + trained * 2 * f_fwd
    hardware_flops = model_flops + trained * recomputed * f_fwd
    peaks = [r["peak_memory_gib"] for r in timed if r.get("peak_memory_gib") is not None]
    return {"resolution": args.resolution, "row": label, "algo": algo, "places": [r["window_start"] for r in timed],
            "nfe": mean("nfe"), "network_evals": evals, "trained_rows": trained, "checkpointing": mode,
            "rollout_s": mean("rollout_s"), "reward_s": mean("reward_s"), "update_s": mean("update_s"),
            "seconds": seconds, "peak_memory_gib": max(peaks) if peaks else None,
            "compile_s": warm.get("compile_s", 0.0), "recompile_s": sum(r.get("compile_s", 0.0) for r in timed),
            "model_pflop": model_flops / 1e15,
            "mfu": model_flops / seconds / peak_rate if peak_rate else None,
            "hfu": hardware_flops / seconds / peak_rate if peak_rate else None,
            "max_abs_log_ratio": max(r["first_max_abs_log_ratio"] for r in history)}


def preset_forward_flops(preset: str, resolution: int) -> tuple[float, int]:
    """``F`` for one sample of ``preset`` at ``resolution``, and its block count, from the preset's config."""
    p = gpu_flux.PRESETS[preset]
    config = SimpleNamespace(num_layers=p["num_layers"], num_single_layers=p["num_single_layers"],
                             num_attention_heads=p["num_attention_heads"], attention_head_dim=p["attention_head_dim"])
    flops = gpu_flux.forward_flops(SimpleNamespace(config=config), resolution, p["text_tokens"])
    return flops, p["num_layers"] + p["num_single_layers"]


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row's seconds ÷ DanceGRPO 25/14's at the same resolution (where that row was measured)."""
    base = {r["resolution"]: r["seconds"] for r in rows if r["algo"] == "dancegrpo"}
    for r in rows:
        r["ratio_to_dancegrpo"] = r["seconds"] / base[r["resolution"]] if r["resolution"] in base else None
    return rows


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def to_markdown(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| Resolution | Row | window places | network evals / it | trained rows | checkpointing | rollout s "
             "| reward s | update s | s / it | ÷ DanceGRPO | peak GiB | compile s | recompile s | MFU | HFU "
             "| max abs log r |", "|---" * 17 + "|"]
    for r in rows:
        places = sorted(set(r["places"]))
        where = f"{places[0]}–{places[-1]}" if len(places) > 1 else str(places[0])
        ratio = "–" if r["ratio_to_dancegrpo"] is None else f"{r['ratio_to_dancegrpo']:.2f}"
        memory = "–" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}"
        lines.append(f"| {r['resolution']}² | {r['row']} | {where} | {r['network_evals']:.0f} | {r['trained_rows']} "
                     f"| {r['checkpointing']} | {r['rollout_s']:.2f} | {r['reward_s']:.2f} | {r['update_s']:.2f} "
                     f"| {r['seconds']:.2f} | {ratio} | {memory} | {r['compile_s']:.0f} | {r['recompile_s']:.1f} "
                     f"| {percent(r['mfu'])} | {percent(r['hfu'])} | {r['max_abs_log_ratio']:.1e} |")
    return "\n".join(lines) + "\n"


def header_text(args, argv) -> str:
    command = " ".join(sys.argv[1:] if argv is None else argv)
    return (f"# Table 1 through trainer.run, run-averaged: {args.preset} on {gpu_flux.device_name(args.device)}\n\n"
            f"Group {args.group}, one prompt per iteration, LoRA rank {args.lora_rank}, micro-batch {args.micro_batch}, "
            f"{STEPS} steps, window {WINDOW}, --checkpointing {args.checkpointing}, "
            f"{'--compile' if args.compile else 'uncompiled'}, {gpu_cli.versions()}. Window places l = 0–{args.places - 1} once "
            f"each (the paper's 300 iterations at τ = 25 visit l = 0–11 equally). Command: "
            f"`python -m benchmarks.gpu_table1 {command}`")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(gpu_flux.PRESETS), default="flux-dev")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[512, 720])
    parser.add_argument("--rows", nargs="+", default=None, help="row labels to run (default: all four)")
    parser.add_argument("--group", type=int, default=12)
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=12, help="samples per forward/backward in the update")
    parser.add_argument("--checkpointing", choices=("off", "full", "selective", "auto"), default="auto")
    parser.add_argument("--batch-transitions", action="store_true", help="pass --batch-transitions to every row")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--places", type=int, default=12, help="window places timed, l = 0 … places − 1")
    parser.add_argument("--constant-iterations", type=int, default=3,
                        help="iterations timed for the rows whose cost does not depend on the window's place")
    parser.add_argument("--row-timeout", type=float, default=None, help="seconds one trainer.run may take")
    parser.add_argument("--work-dir", default=None, help="where the pipeline folder is written (default: temp)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write a Markdown table (and .json beside it), again after every row")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.places <= STEPS - WINDOW:
        parser.error(f"--places must be within 1–{STEPS - WINDOW} (the window's places on {STEPS} steps)")
    header = header_text(args, argv)
    peak_rate = gpu_flux.peak_rate(args.device)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        work = Path(work)
        started = time.perf_counter()
        folder = gpu_flux.write_pipeline_folder(args.preset, work / "model", args.device, dtype)
        if args.device.startswith("cuda"):
            gc.collect()  # the pipeline built to write the folder, reference cycles included
            torch.cuda.empty_cache()  # every trainer.run finds the GPU's memory free (auto checkpointing reads it)
        print(f"{args.preset} written in {time.perf_counter() - started:.0f}s", flush=True)
        for resolution in args.resolutions:
            args.resolution = resolution
            f_fwd, blocks = preset_forward_flops(args.preset, resolution)
            for label, algo, moves in ROWS:
                if args.rows and label not in args.rows:
                    continue
                history, mode = run_row(args, algo, moves, folder, work)
                rows.append(summarise(args, label, algo, history, mode, blocks, f_fwd, peak_rate))
                print(json.dumps(rows[-1]), flush=True)
                if args.out is not None:  # a cut-short run keeps the rows it finished
                    write_table_file(args.out, to_markdown(with_ratios(rows), header), rows, echo=False)
    write_table_file(args.out, to_markdown(with_ratios(rows), header), rows)
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

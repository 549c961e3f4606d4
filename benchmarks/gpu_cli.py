"""The trainer's own command against the benchmark's direct path, on the same shapes, side by side from one run.

    python -m benchmarks.gpu_cli                       # CUDA: flux-dev-slice, 512², MixGRPO, group 12
    python -m benchmarks.gpu_cli --preset tiny --device cpu --resolution 64 --group 4 --micro-batch 4 --lora-rank 4

Rows, each the mean over ``--iterations`` iterations after one warm-up iteration:

- **direct**: :mod:`benchmarks.gpu_flux`'s path: the pipeline built in the compute dtype in memory
  and :meth:`trainer.iteration.Trainer.iteration` called directly (nothing loads from disk);
- **trainer.run**: the same pipeline saved as a diffusers folder (bf16 safetensors), then ``python -m
  trainer.run --model <folder>`` as a user runs it, its ``metrics.jsonl`` read back (its ``seconds``
  and ``peak_memory_gib`` per iteration);
- **trainer.run --compile**: the same with each transformer block compiled; the compile time is
  reported apart (``compile_s``) and left out of its seconds per iteration.

FLOP utilisation is :mod:`benchmarks.gpu_flux`'s hardware count (HFU): ``(network_evals · F_fwd +
trained_rows · 3·F_fwd) / seconds / peak``, one recomputation per trained row under full
checkpointing included. The goal: trainer.run within 5 % of the direct path in time and 1.1× in
peak memory; with --compile, at least 50 % HFU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import gpu_flux, write_table_file
from mixgrpo.cli import add_debug_flag, run_command

ROOT = Path(__file__).resolve().parent.parent


def direct(args) -> tuple[dict, float]:
    """Warm-up plus ``args.iterations`` iterations of the direct path, and ``F_fwd``; frees the model before
    returning."""
    from mixgrpo.models.flux import FluxAdapter
    from mixgrpo.models.gpu import configure_attention

    device = torch.device(args.device)
    configure_attention(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pipe, text_tokens = gpu_flux.build_pipeline(args.preset, args.device, dtype)
    model = FluxAdapter(pipe, max_sequence_length=text_tokens)
    params = model.add_lora(rank=args.lora_rank, alpha=args.lora_rank)
    model.transformer.enable_gradient_checkpointing()
    f_fwd = gpu_flux.forward_flops(model.transformer, args.resolution, text_tokens)
    trainer = gpu_flux.make_trainer(model, params, args.algo, args.resolution, args)
    trainer.iteration(0, [0])
    rows = []
    for i in range(1, args.iterations + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        rows.append(trainer.iteration(i, [i]))
    del trainer, model, pipe, params
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return summarise("direct", rows, f_fwd, args), f_fwd


def cli_flags(args, folder: Path, run_dir: Path, name: str, algo: str, iterations: int,
              checkpointing: str = "full") -> list[str]:
    """The trainer.run flags of the direct path's configuration (gpu_flux.make_trainer): ``args`` gives the device,
    resolution, group, LoRA rank and micro-batch."""
    eval_file = run_dir / "eval_prompt.txt"
    eval_file.write_text("a red circle\n")  # one held-out prompt, one seed: the evaluations stay short
    flags = ["--model", str(folder), "--device", args.device, "--algo", algo,
             "--resolution", args.resolution, "--group-size", args.group, "--prompts-per-iter", 1,
             "--lora-rank", args.lora_rank, "--lora-alpha", args.lora_rank, "--checkpointing", checkpointing,
             "--steps", 25, "--window", 4, "--updates-per-iter", 1, "--micro-batch", args.micro_batch,
             "--shift", 3.0, "--learning-rate", 1e-5, "--iterations", iterations,
             "--eval-prompts", eval_file, "--eval-seeds", 1, "--checkpoint-every", 1000,
             "--run-dir", run_dir, "--name", name,
             "--mixed-precision", "bf16" if args.device.startswith("cuda") else "no"]
    return [str(f) for f in flags]


def run_trainer(flags: list[str], run_dir: Path, name: str, timeout: float | None = None) -> tuple[list[dict], str]:
    """``python -m trainer.run <flags>`` as a subprocess: the rows of its ``metrics.jsonl`` and its stdout."""
    command = [sys.executable, "-m", "trainer.run", *flags]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (run_dir / name / "metrics.jsonl").read_text().splitlines()]
    return rows, done.stdout


def trainer_run(args, folder: Path, run_dir: Path, f_fwd: float, compile: bool) -> dict:
    """``python -m trainer.run`` as a subprocess; its rows after the first iteration."""
    name = "compiled" if compile else "plain"
    flags = cli_flags(args, folder, run_dir, name, args.algo, args.iterations + 1) + (["--compile"] if compile else [])
    started = time.perf_counter()
    rows, _ = run_trainer(flags, run_dir, name)
    label = "trainer.run --compile" if compile else "trainer.run"
    result = summarise(label, rows[1:], f_fwd, args)
    result["command_s"] = time.perf_counter() - started
    result["compile_s"] = sum(r.get("compile_s", 0.0) for r in rows)
    return result


def summarise(label: str, rows: list[dict], f_fwd: float, args) -> dict:
    """Mean seconds (compile time left out), peak memory and HFU (the ``mfu`` key) of ``rows``."""
    seconds = sum(r["seconds"] - r.get("compile_s", 0.0) for r in rows) / len(rows)
    peaks = [r["peak_memory_gib"] for r in rows if r.get("peak_memory_gib") is not None]
    flops = (rows[-1]["network_evals"] * f_fwd
             + gpu_flux.trained_rows(args.algo, 4, 25, args.group, 0.6) * 3 * f_fwd)
    peak_rate = gpu_flux.peak_rate(args.device)
    return {"row": label, "seconds": seconds, "peak_memory_gib": max(peaks) if peaks else None,
            "mfu": flops / seconds / peak_rate if peak_rate else None, "iterations": len(rows),
            "max_abs_log_ratio": max(r["first_max_abs_log_ratio"] for r in rows)}


def run(args) -> list[dict]:
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        work = Path(work)
        started = time.perf_counter()
        folder = gpu_flux.write_pipeline_folder(args.preset, work / "model", args.device)
        print(f"{args.preset} written as bf16 safetensors in {time.perf_counter() - started:.0f}s", flush=True)
        first, f_fwd = direct(args)
        rows = [first]
        print(json.dumps(first), flush=True)
        for compile in (False, True) if not args.no_compile else (False,):
            rows.append(trainer_run(args, folder, work, f_fwd, compile))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    for r in rows:
        r["time_vs_direct"] = r["seconds"] / base["seconds"]
        if r["peak_memory_gib"] is not None and base["peak_memory_gib"]:
            r["memory_vs_direct"] = r["peak_memory_gib"] / base["peak_memory_gib"]
    return rows


def versions() -> str:
    """torch's version, and diffusers' where it is installed."""
    try:
        import diffusers
    except ImportError:
        return f"torch {torch.__version__}"
    return f"torch {torch.__version__}, diffusers {diffusers.__version__}"


def to_markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| path | s / iteration | × direct | peak GiB | × direct | HFU | compile s | max abs log r |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "–"
        mem_ratio = f"{r['memory_vs_direct']:.2f}" if "memory_vs_direct" in r else "–"
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "–"
        compile_s = f"{r['compile_s']:.0f}" if r.get("compile_s") else "–"
        lines.append(f"| {r['row']} | {r['seconds']:.2f} | {r['time_vs_direct']:.3f} | {mem} | {mem_ratio} | {mfu} "
                     f"| {compile_s} | {r['max_abs_log_ratio']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(gpu_flux.PRESETS), default="flux-dev-slice")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--algo", default="mixgrpo")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--group", type=int, default=12)
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations after one warm-up")
    parser.add_argument("--no-compile", action="store_true", help="leave out the --compile row")
    parser.add_argument("--work-dir", default=None, help="where the pipeline folder is written (default: temp)")
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown table (and .json beside it)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    rows = run(args)
    header = (f"# trainer.run against the direct path: {args.preset}, {args.resolution}², {args.algo}, on "
              f"{gpu_flux.device_name(args.device)}\n\nGroup {args.group}, one prompt per iteration, LoRA rank "
              f"{args.lora_rank}, gradient checkpointing, micro-batch {args.micro_batch}, {versions()}. Command: `python -m "
              f"benchmarks.gpu_cli {' '.join(sys.argv[1:] if argv is None else argv)}`")
    write_table_file(args.out, to_markdown(rows, header), rows)
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

"""Throughput side by side: one process, two DDP processes, two FSDP2 processes; LoRA and full fine-tune.

    python -m benchmarks.distributed [--iterations 4] [--group-size 8] [--prompts-per-iter 2]

Each row is one real ``trainer.run`` on the embedded model, launched with ``accelerate launch
--multi_gpu --num_processes 2`` (gloo on a CPU) for the two-process rows. Seconds per iteration and
per phase (rollout, decode + reward, update) are medians over the iterations after the first
(warm-up), as ``metrics.jsonl`` records them on the main process; the speed-up is against the
one-process row of the same training mode. On a 2-core CPU two processes share the cores one
process already uses, so these rows measure the engines' overhead, not a gain: the gain needs a
device per process. Writes ``benchmarks/results/distributed.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mixgrpo.cli import add_debug_flag, run_command
from mixgrpo.run_folder import RunFolder

from . import write_results
from .trainer_runs import machine_info, write_eval_prompts

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainer.run"]
ROWS = [("LoRA", 1, "one process"), ("LoRA", 2, "ddp"), ("LoRA", 2, "fsdp"),
        ("full", 1, "one process"), ("full", 2, "ddp"), ("full", 2, "fsdp")]
PHASES = ("seconds", "rollout_s", "reward_s", "update_s")


def run(mode: str, processes: int, sharding: str, args, root: Path, eval_file: Path) -> dict:
    name = f"{mode}-{processes}-{sharding.replace(' ', '-')}"
    flags = ["--iterations", str(args.iterations), "--group-size", str(args.group_size), "--prompts-per-iter",
             str(args.prompts_per_iter), "--eval-every", "0", "--eval-seeds", "1", "--eval-prompts", str(eval_file),
             "--checkpoint-every", "1000", "--run-dir", str(root), "--name", name]
    flags += ["--full-finetune", "--learning-rate", "1e-5"] if mode == "full" else []
    command = [sys.executable, "-m", "trainer.run"] if processes == 1 else LAUNCH + ["--sharding", sharding]
    done = subprocess.run(command + flags, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
    history = RunFolder(root / name).read_metrics()
    assert all(row["world_size"] == processes for row in history), f"{name}: not {processes} processes"
    timed = history[1:] or history
    return {"mode": mode, "processes": processes, "sharding": sharding,
            **{phase: statistics.median(row[phase] for row in timed) for phase in PHASES}}


def markdown(rows: list[dict], args, machine: dict) -> str:
    base = {r["mode"]: r["seconds"] for r in rows if r["processes"] == 1}
    head = (f"# Distributed throughput on the embedded model (`python -m benchmarks.distributed`)\n\n"
            f"CPU: {machine['cpu']}, {machine['cores']} cores; torch {machine['torch']}; gloo. "
            f"{args.group_size} samples × {args.prompts_per_iter} prompts per iteration, {args.iterations} "
            "iterations (medians after the first). Two processes share the same cores here: the rows show "
            "the engines' overhead; a gain needs a device per process.\n\n"
            "| training | processes | engine | s / iteration | rollout s | reward s | update s | vs one process |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['mode']} | {r['processes']} | {r['sharding']} | {r['seconds']:.2f} | {r['rollout_s']:.2f} | "
             f"{r['reward_s']:.2f} | {r['update_s']:.2f} | {base[r['mode']] / r['seconds']:.2f}× |" for r in rows]
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-iter", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for distributed.md and .json")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        eval_file = write_eval_prompts(Path(tmp), 1)
        rows = []
        for mode, processes, sharding in ROWS:
            rows.append(run(mode, processes, sharding, args, Path(tmp) / "runs", eval_file))
            print(f"{mode} {processes} {sharding}: {rows[-1]['seconds']:.2f} s/iteration", flush=True)
    text = markdown(rows, args, machine)
    write_results(args.out, "distributed", text, {"machine": machine, "rows": rows})
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

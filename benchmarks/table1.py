"""The paper's efficiency table on the embedded model and the shapes reward, all rows in one process.

    python -m benchmarks.table1                       # K = 24 iterations, τ = 2, seeds 0 1 2 (≈ 40 min on 2 CPU cores)
    python -m benchmarks.table1 --iterations 2 --seeds 0 --eval-prompts 4   # a smoke run

Every row is a real ``trainer.run`` on the same training prompts, seeds, iteration budget and
held-out prompts (the first ``--eval-prompts`` of the shapes test split, ``--eval-seeds`` fixed
seeds each), with the embedded model's own guidance. The costs are **run-averaged**: with 25 steps
and a window of 4 the progressive window has 12 places (0–11), and the paper's run (300 iterations,
τ = 25) spends 25 iterations at each. Here every row runs ``--iterations`` iterations with the window
moving every ``--shift-interval`` (24 and 2: each place twice, the same weights), and its seconds
per phase are the **mean over all iterations**, so they weigh each window place by the share of a
run it takes. Rows whose window does not move (Flash*, DanceGRPO) run the same schedule unchanged.

Per row: the old-policy NFE (mean over iterations), the trained steps per sample, seconds per
iteration split into rollout / reward / update, the ratio to DanceGRPO 25/14 (with the CPU target
of each MixGRPO row), the held-out reward after K iterations (mean ± std over seeds), and the
training wall time (evaluations excluded) at which the row's mean curve first reaches DanceGRPO
25/14's final reward. Writes ``table1.md``, ``table1.json`` and ``table1.png`` (reward against
wall-clock time) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mixgrpo.cli import add_debug_flag, run_command

from .trainer_runs import machine_info, plot_curves, run_row, summarise, time_to_reach, write_eval_prompts

#: the CPU target of each row's seconds per iteration ÷ DanceGRPO 25/14
TARGETS = {"MixGRPO": 0.50, "MixGRPO-Flash": 0.40, "MixGRPO-Flash*": 0.30}
ROWS = [  # (label, flags, trained steps per sample)
    ("DanceGRPO 25/14", ["--algo", "dancegrpo"], "14 random"),
    ("DanceGRPO 25/4", ["--algo", "dancegrpo", "--dance-fraction", "0.17"], "4 random"),
    ("DanceGRPO 25/4*", ["--algo", "dancegrpo", "--dance-first", "4"], "first 4"),
    ("MixGRPO", ["--algo", "mixgrpo", "--window", "4"], "4 (progressive window)"),
    ("MixGRPO-Flash", ["--algo", "flash", "--window", "4"], "4"),
    ("MixGRPO-Flash*", ["--algo", "flash_star", "--window", "4"], "4 (frozen window)"),
]


def to_markdown(rows: list[dict], args, total_minutes: float, machine: dict) -> str:
    base = rows[0]
    lines = ["# Table 1 on the embedded model (shapes reward, CPU)", "",
             f"CPU: {machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}. K = {args.iterations} "
             f"iterations, the window moving every {args.shift_interval} (run-averaged: each of a run's window "
             f"places weighted by its share of the run), seeds {args.seeds}, trainer defaults otherwise (group 8 × 4 "
             f"prompts, 25 steps, the model's guidance); seconds are means over every iteration; held-out: first "
             f"{args.eval_prompts} test prompts × {args.eval_seeds} seeds. Whole benchmark: {total_minutes:.1f} min. "
             f"Command: `python -m benchmarks.table1 --iterations {args.iterations} --shift-interval "
             f"{args.shift_interval} --seeds {' '.join(map(str, args.seeds))}`", "",
             "| Row | Trained steps | Old-policy NFE | Network evals / it | Rollout s | Reward s | Update s | s / it "
             "| ÷ DanceGRPO 25/14 (target) | Held-out reward at K (± std) | Time to DanceGRPO 25/14's final |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reach = time_to_reach(r["curve"], base["final_mean"])
        reach_text = "not reached" if reach is None else f"{reach:.0f} s ({reach / base['curve'][-1][0]:.2f}×)"
        target = f" (≤ {TARGETS[r['row']]:.2f})" if r["row"] in TARGETS else ""
        lines.append(f"| {r['row']} | {r['trained_steps']} | {r['old_policy_nfe']:.1f} | "
                     f"{r['network_evals_per_iteration']:.0f} | {r['rollout_s']:.2f} | {r['reward_s']:.2f} | "
                     f"{r['update_s']:.2f} | {r['seconds']:.2f} | {r['seconds'] / base['seconds']:.2f}{target} | "
                     f"{r['final_mean']:.4f} ± {r['final_std']:.4f} (start {r['start_mean']:.4f}) | {reach_text} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=24)
    parser.add_argument("--shift-interval", type=int, default=2, help="iterations per window place (τ)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=6)
    parser.add_argument("--eval-prompts", type=int, default=24)
    parser.add_argument("--eval-seeds", type=int, default=1)
    parser.add_argument("--rows", nargs="+", default=None, help="row labels to run (default: all six)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        eval_file = write_eval_prompts(root, args.eval_prompts)
        for label, flags, trained in ROWS:
            if args.rows and label not in args.rows:
                continue
            runs = [run_row(flags + ["--shift-interval", str(args.shift_interval)], seed, args, root, eval_file)
                    for seed in args.seeds]
            rows.append(summarise(label, trained, runs, timing=statistics.mean))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}), flush=True)
    table = to_markdown(rows, args, (time.time() - started) / 60, machine_info())
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table1.md").write_text(table)
    (args.out / "table1.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_curves(rows, args.out / "table1.png")
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

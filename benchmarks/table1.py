"""The paper's efficiency table on the embedded model and the shapes reward, all rows in one process.

    python -m benchmarks.table1                       # K = 20 iterations, seeds 0 1 2 (≈ 35 min on 2 CPU cores)
    python -m benchmarks.table1 --iterations 2 --seeds 0 --eval-prompts 4   # a smoke run

Every row is a real ``trainer.run`` on the same training prompts, seeds, iteration budget and
held-out prompts (the first ``--eval-prompts`` of the shapes test split, ``--eval-seeds`` fixed
seeds each). Per row it reports the old-policy NFE (mean over iterations), the trained steps per
sample, seconds per iteration split into rollout / reward / update (medians), the ratio to
DanceGRPO 25/14, the held-out reward after K iterations (mean ± std over seeds), and the training
wall time (evaluations excluded) at which the row's mean curve first reaches DanceGRPO 25/14's final
reward. Writes ``table1.md``, ``table1.json`` and ``table1.png`` (reward against wall-clock time)
to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from mixgrpo.cli import add_debug_flag, run_command

from .trainer_runs import plot_curves, run_row, summarise, time_to_reach, write_eval_prompts

ROWS = [  # (label, flags, trained steps per sample)
    ("DanceGRPO 25/14", ["--algo", "dancegrpo"], "14 random"),
    ("DanceGRPO 25/4", ["--algo", "dancegrpo", "--dance-fraction", "0.17"], "4 random"),
    ("DanceGRPO 25/4*", ["--algo", "dancegrpo", "--dance-first", "4"], "first 4"),
    ("MixGRPO", ["--algo", "mixgrpo", "--window", "4"], "4 (progressive window)"),
    ("MixGRPO-Flash", ["--algo", "flash", "--window", "4"], "4"),
    ("MixGRPO-Flash*", ["--algo", "flash_star", "--window", "4"], "4 (frozen window)"),
]


def to_markdown(rows: list[dict], args, total_minutes: float) -> str:
    base = rows[0]
    lines = [f"# Table 1 on the embedded model (shapes reward, CPU)", "",
             f"K = {args.iterations} iterations, seeds {args.seeds}, trainer defaults otherwise (group 8 × 4 prompts, "
             f"25 steps); held-out: first {args.eval_prompts} test prompts × {args.eval_seeds} seeds. "
             f"Whole benchmark: {total_minutes:.1f} min. Command: `python -m benchmarks.table1 "
             f"--iterations {args.iterations} --seeds {' '.join(map(str, args.seeds))}`", "",
             "| Row | Trained steps | Old-policy NFE | Network evals / it | Rollout s | Reward s | Update s | s / it "
             "| ÷ DanceGRPO 25/14 | Held-out reward at K (± std) | Time to DanceGRPO 25/14's final |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reach = time_to_reach(r["curve"], base["final_mean"])
        reach_text = "not reached" if reach is None else f"{reach:.0f} s ({reach / base['curve'][-1][0]:.2f}×)"
        lines.append(f"| {r['row']} | {r['trained_steps']} | {r['old_policy_nfe']:.1f} | "
                     f"{r['network_evals_per_iteration']:.0f} | {r['rollout_s']:.2f} | {r['reward_s']:.2f} | "
                     f"{r['update_s']:.2f} | {r['seconds']:.2f} | {r['seconds'] / base['seconds']:.2f} | "
                     f"{r['final_mean']:.4f} ± {r['final_std']:.4f} (start {r['start_mean']:.4f}) | {reach_text} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=5)
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
            runs = [run_row(flags, seed, args, root, eval_file) for seed in args.seeds]
            rows.append(summarise(label, trained, runs))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}), flush=True)
    table = to_markdown(rows, args, (time.time() - started) / 60)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table1.md").write_text(table)
    (args.out / "table1.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_curves(rows, args.out / "table1.png")
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

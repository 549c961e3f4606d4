"""``python -m benchmarks.default_run``: the quick-start run, timed phase by phase, and projected to a slow host.

It runs ``python -m trainer.run --window 4`` exactly as a newcomer does (a subprocess, its own run
folder) and reads the phases back from the run folder:

- rollout, decode + score, and update: the sums of ``metrics.jsonl``'s per-iteration seconds;
- the held-out evaluations: ``eval.json`` records each one's seconds;
- the rest: Python start-up and imports, loading the model and reward, checkpoints, plots, export
  (the command's wall time minus the above).

**Projection to the slowest host of this kind.** Hosts differ by about 3× in CPU speed. The same
script then times a *reference iteration*, the one a slow 2-core AMD EPYC (Zen 2, AVX2 only) host
was measured on at 12–14 s (``REFERENCE_SECONDS`` = 13): MixGRPO, 25 Euler steps, 4 prompts × 8
samples with guidance 2.0 (``REFERENCE_FLAGS``). Their ratio scales this host's total:
``projected = total × REFERENCE_SECONDS / reference iteration here``. The bar is ``projected ≤ 300 s``.

Writes ``benchmarks/results/default_run.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.trainer_runs import embedded_model_info, machine_info
from mixgrpo.run_folder import RunFolder

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
QUICK_START = ["--window", "4"]
REFERENCE_SECONDS = 13.0
REFERENCE_FLAGS = ["--window", "4", "--algo", "mixgrpo", "--steps", "25", "--group-size", "8", "--prompts-per-iter",
                   "4", "--cfg-scale", "2", "--iterations", "4"]
BAR_SECONDS = 300.0


def trainer_run(flags: list[str], root: Path, name: str) -> tuple[float, RunFolder, str]:
    """``python -m trainer.run flags`` into ``root/name``: its wall time from the command's start, its
    folder and the last line it printed."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trainer.run", *flags, "--run-dir", str(root), "--name", name],
                          cwd=REPO, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return time.perf_counter() - started, RunFolder(root / name), done.stdout.strip().splitlines()[-1]


def phases(total: float, folder: RunFolder) -> dict[str, float]:
    """Seconds per phase of a finished run (see the module docstring)."""
    history, evaluations = folder.read_metrics(), folder.read_evaluations()
    spent = {"rollout": sum(h["rollout_s"] for h in history),
             "decode + score": sum(h["reward_s"] for h in history),
             "update": sum(h["update_s"] for h in history),
             "held-out evaluations": sum(e.get("seconds", 0.0) for e in evaluations)}
    spent["start-up, checkpoints, plots, export"] = total - sum(spent.values())
    return spent


def reference_iteration(root: Path) -> float:
    """Median seconds of the reference iteration here (the first one, which warms up, left out)."""
    eval_file = root / "reference_eval.txt"
    eval_file.write_text("a red circle\n")
    _, folder, _ = trainer_run([*REFERENCE_FLAGS, "--eval-prompts", str(eval_file), "--eval-seeds", "1"], root,
                            "reference")
    return statistics.median(h["seconds"] for h in folder.read_metrics()[1:])


def report(result: dict) -> str:
    total, projected = result["total_s"], result["projected_s"]
    rise = result["rise"]
    lines = [
        "# The default run, phase by phase",
        "",
        f"`python -m benchmarks.default_run`: `python -m trainer.run {' '.join(QUICK_START)}` as a newcomer runs it, "
        f"on {result['machine']['cpu']} ({result['machine']['cores']} cores, {result['machine']['torch_threads']} "
        f"torch threads), embedded transformer `{result['model']['transformer_sha256']}`.",
        "",
        "| phase | seconds | share |",
        "|---|---|---|",
        *[f"| {name} | {seconds:.1f} | {100 * seconds / total:.0f} % |" for name, seconds in result["phases"].items()],
        f"| **total** | **{total:.1f}** | {result['iterations']} iterations |",
        "",
        f"Projected to the slowest host of this kind: the reference iteration ({' '.join(REFERENCE_FLAGS[:-2])}) "
        f"takes {result['reference_s']:.2f} s here against {REFERENCE_SECONDS:.0f} s there, so "
        f"**{total:.0f} s × {REFERENCE_SECONDS:.0f} / {result['reference_s']:.2f} = {projected:.0f} s** "
        f"(bar: {BAR_SECONDS:.0f} s; {'met' if projected <= BAR_SECONDS else 'NOT met'}).",
        "",
        "The run ends with:",
        "",
        "```text",
        result["last_line"],
        "```",
        "",
        f"Held-out reward: before {result['before']:.3f} → after {result['after']:.3f}"
        + (f", rise {rise['mean']:+.3f} ± {rise['standard_error']:.3f} (standard error over {rise['prompts']} "
           f"prompts × {rise['seeds']} seeds; {'beyond' if rise['beyond_noise'] else 'within'} noise)." if rise else "."),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for default_run.md and .json")
    parser.add_argument("--docs-images", action="store_true",
                        help="copy the run's training plot and before/after grid into docs/ (the README's pictures)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        total, folder, last_line = trainer_run(QUICK_START, root, "default")
        summary = folder.read_summary()
        result = {"machine": machine_info(), "model": embedded_model_info(), "total_s": total,
                  "phases": phases(total, folder), "iterations": len(folder.read_metrics()),
                  "before": summary["before"], "after": summary["after"], "rise": summary.get("rise"),
                  "last_line": last_line.replace(str(root), "runs"), "reference_s": reference_iteration(root)}
        if args.docs_images:
            shutil.copyfile(folder.training_plot, REPO / "docs" / "default_run_training.png")
            shutil.copyfile(folder.sample_grid("before_after"), REPO / "docs" / "default_run_before_after.png")
    result["projected_s"] = total * REFERENCE_SECONDS / result["reference_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "default_run.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / "default_run.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()

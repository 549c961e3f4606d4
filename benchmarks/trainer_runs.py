"""Shared harness of the benchmarks that compare real ``trainer.run`` runs (table1.py, ablations.py).

A run is one ``trainer.run`` call on the embedded model and the shapes reward; its per-iteration
metrics and held-out evaluations are read back from the run folder. Runs of one row over several
seeds are summarised into one row: old-policy NFE (mean over iterations), network evaluations per
iteration, seconds per phase (medians over all iterations, or means for a run-averaged cost), and
the held-out reward after K iterations (mean ± population std over seeds).
"""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
from pathlib import Path

import torch

from mixgrpo.run_folder import RunFolder


def write_eval_prompts(folder: Path, count: int) -> Path:
    """The first ``count`` prompts of the shapes test split, one per line (``--eval-prompts`` file)."""
    from mixgrpo.shapes import test_prompts

    path = folder / "eval_prompts.txt"
    path.write_text("\n".join(test_prompts()[:count]) + "\n")
    return path


def run_name(flags: list[str], seed: int) -> str:
    """A run-folder name from the trainer flags (``--algo mixgrpo --window 4`` → ``mixgrpo-window-4``)."""
    return f"{flags[1]}-{'-'.join(flags[2:]).replace('--', '')}-seed{seed}"


def run_row(flags: list[str], seed: int, args, root: Path, eval_file: Path, name: str | None = None) -> dict:
    """One ``trainer.run`` with ``flags`` and ``seed``; ``args`` gives iterations, eval_every and eval_seeds.

    Returns the per-iteration ``history`` (metrics.jsonl), the ``curve`` of (training seconds,
    held-out reward) at each evaluation, evaluations excluded from the seconds, and the ``final``
    held-out reward.
    """
    from trainer.run import main

    name = name or run_name(flags, seed)
    main([*flags, "--seed", str(seed), "--iterations", str(args.iterations), "--eval-every", str(args.eval_every),
          "--eval-seeds", str(args.eval_seeds), "--eval-prompts", str(eval_file), "--checkpoint-every", "1000",
          "--run-dir", str(root), "--name", name])
    folder = RunFolder(root / name)
    history, evaluations = folder.read_metrics(), folder.read_evaluations()
    elapsed = [0.0]
    for h in history:
        elapsed.append(elapsed[-1] + h["seconds"])
    curve = [(elapsed[e["iteration"]], e["mean"]) for e in evaluations]  # training seconds at each evaluation
    return {"history": history, "curve": curve, "final": evaluations[-1]["mean"]}


def summarise(label: str, trained: str, runs: list[dict], timing=statistics.median) -> dict:
    """One row from the runs of all seeds (see the module docstring for what each figure is); ``timing``
    averages the seconds over iterations (the median, or the mean for a run-averaged cost)."""
    histories = [h for r in runs for h in r["history"]]
    finals = [r["final"] for r in runs]
    points = len(runs[0]["curve"])
    mean_curve = [(statistics.mean(r["curve"][i][0] for r in runs), statistics.mean(r["curve"][i][1] for r in runs))
                  for i in range(points)]
    return {
        "row": label, "trained_steps": trained,
        "old_policy_nfe": statistics.mean(h["nfe"] for h in histories),
        "network_evals_per_iteration": statistics.mean(h["network_evals"] for h in histories),
        "rollout_s": timing(h["rollout_s"] for h in histories),
        "reward_s": timing(h["reward_s"] for h in histories),
        "update_s": timing(h["update_s"] for h in histories),
        "seconds": timing(h["seconds"] for h in histories),
        "final_mean": statistics.mean(finals), "final_std": statistics.pstdev(finals) if len(finals) > 1 else 0.0,
        "start_mean": statistics.mean(r["curve"][0][1] for r in runs),
        "curve": mean_curve,
    }


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """Training seconds at the first evaluation whose reward is ≥ ``target`` (None: never)."""
    return next((t for t, reward in curve if reward >= target), None)


def plot_curves(rows: list[dict], path: Path, title: str = "reward against time (mean over seeds)") -> None:
    """Held-out reward against training wall-clock time, one line per row."""
    from mixgrpo.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        ax.plot([t for t, _ in r["curve"]], [v for _, v in r["curve"]], "o-", markersize=3, label=r["row"])
    ax.set(xlabel="training wall-clock time (s, evaluations excluded)", ylabel="held-out shapes reward", title=title)
    ax.legend(fontsize=7)
    _save(fig, path, dpi=110)


def machine_info() -> dict:
    """CPU model, core count, torch threads and versions: what the timings were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "os": platform.platform()}


def embedded_model_info() -> dict:
    """The embedded model's folder, transformer size and a weights fingerprint (which version was trained)."""
    from mixgrpo.models.embedded import EMBEDDED_DIR, read_settings

    weights = EMBEDDED_DIR / "transformer" / "diffusion_pytorch_model.safetensors"
    pretrain = read_settings(EMBEDDED_DIR).get("pretrain", {})
    return {"folder": "mixgrpo/assets/shapes-flux-tiny",
            "transformer_parameters": pretrain.get("parameters", {}).get("transformer"),
            "transformer_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:16]}

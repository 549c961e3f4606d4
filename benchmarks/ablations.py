"""Ablations of MixGRPO on the embedded model and the shapes reward, every row a real trainer run.

    python -m benchmarks.ablations            # K = 16 iterations, seeds 0 1 (≈ 30 min on 2 CPU cores)
    python -m benchmarks.ablations --quick    # every row, 2 tiny iterations, 1 seed: a smoke run (≈ 1 min)

Groups (docs/algorithm.md §3; the paper's ablations):

* window size w ∈ {1, 2, 4, 6};
* shift interval τ (iterations the progressive window stays put) and stride s (steps it then moves);
* window strategy: progressive, random, decay, exp_decay, frozen (at l = 0);
* ODE solver after the window: Euler (1st order), DPM-Solver++ 2M midpoint and Heun (2nd order),
  on MixGRPO-Flash (r̃ = 0.4), where the steps after the window are long enough for the order to
  matter (the paper ablates the order on Flash too);
* shared pre-window trunk on / off: identical rewards, fewer network evaluations.

The default row (MixGRPO, w = 4, progressive, τ = ``--shift-interval``, s = 1, Euler after the
window, shared trunk) belongs to every group but the solver group; it runs once and is shown in each.
More generally two rows whose window sequences over the K iterations coincide (and that differ in
nothing else) are one computation and run once: e.g. exp_decay, whose τ(l) = ⌈τ0·e^{−0.1·max(0, l−13)}⌉
only starts shrinking past l = 13, is the default row until the window gets there.

τ is scaled to the budget. The paper moves the window every 25 of 300 iterations (12 positions); at
K = 16 the default τ = 2 gives 8 positions (l = 0..7), so stride, strategy and trunk rows differ.

Columns, per row (medians over all iterations of all seeds for seconds; see trainer_runs.py):
old-policy NFE = network evaluations of one trajectory (mean over iterations; Flash counts
L + 1 + n with L the last window step and n = ⌊max((T − L)·r̃, 1)⌋ compressed steps); trained NFE =
window steps trained per sample (w); network evals / it = rows the network actually evaluated in
one rollout, ``G·(l + N·(NFE − l))`` with the shared trunk and ``G·N·NFE`` without; the held-out
reward after K iterations (first ``--eval-prompts`` test prompts × ``--eval-seeds`` fixed seeds,
25-step ODE), mean ± std over seeds.

The solver and trunk rows use the trainer's ``--solver`` and ``--no-share-trunk`` flags. The
trunk-off row repeats the default row's runs; its per-iteration mean rewards and the final held-out
reward must equal the default row's up to float rounding (|Δ| ≤ 1e-5: before the window the network
sees batches of G rows instead of G·N, and a matmul's accumulation order may depend on the batch
size). Checked after the results are written; a mismatch fails the script.

Writes ``ablations.md``, ``ablations.json`` and ``ablations.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mixgrpo.cli import add_debug_flag, run_command

from .trainer_runs import embedded_model_info, machine_info, run_name, run_row, summarise, write_eval_prompts

SOLVER_LABELS = {"euler": "Euler (1st order)", "dpm2m": "DPM-Solver++ 2M midpoint", "dpm2m_heun": "DPM-Solver++ 2M Heun"}
GROUPS = ("window size w", "shift interval τ", "stride s", "window strategy", "solver after the window (Flash)",
          "shared trunk")
TRUNK_TOLERANCE = 1e-5  # |Δ reward| allowed between trunk on and off (float rounding)
QUICK = dict(iterations=2, seeds=[0], eval_prompts=2, steps=10, group_size=4, prompts_per_iter=2, shift_interval=1)


@dataclass(frozen=True)
class Setting:
    """One ablation configuration, turned into trainer flags by :meth:`flags`."""

    algo: str = "mixgrpo"
    window: int = 4
    strategy: str = "progressive"
    interval: int = 2
    stride: int = 1
    solver: str | None = None  # None: the algorithm's own (Euler for MixGRPO, midpoint for Flash)
    share_trunk: bool = True

    def flags(self, args) -> list[str]:
        return ["--algo", self.algo, "--window", str(self.window), "--window-strategy", self.strategy,
                "--shift-interval", str(self.interval), "--stride", str(self.stride), "--steps", str(args.steps),
                "--group-size", str(args.group_size), "--prompts-per-iter", str(args.prompts_per_iter),
                *(["--solver", self.solver] if self.solver else []), *([] if self.share_trunk else ["--no-share-trunk"])]

    def window_starts(self, args, seed: int) -> list[int]:
        """Left boundaries l of iterations 0..K−1, as the trainer's WindowSchedule will produce them."""
        from mixgrpo import WindowSchedule

        schedule = WindowSchedule(num_steps=args.steps, size=self.window, strategy=self.strategy,
                                  shift_interval=self.interval, stride=self.stride, seed=seed)
        return schedule.lefts(args.iterations)

    def run_key(self, args, seed: int) -> tuple:
        """Settings that change a run's computation: equal keys give the same run."""
        return (self.algo, self.window, tuple(self.window_starts(args, seed)), self.solver, self.share_trunk, seed)


def ablation_rows(args) -> list[tuple[str, str, Setting]]:
    """(group, label, setting) for every row of the selected groups; each group holds the default row."""
    default = Setting(interval=args.shift_interval)
    rows = [("window size w", f"w = {w}", replace(default, window=w)) for w in args.windows]
    rows += [("shift interval τ", f"τ = {t}", replace(default, interval=t)) for t in args.intervals]
    rows += [("stride s", f"s = {s}", replace(default, stride=s)) for s in args.strides]
    rows += [("window strategy", name + (" (l = 0)" if name == "frozen" else ""), replace(default, strategy=name))
             for name in args.strategies]
    rows += [("solver after the window (Flash)", SOLVER_LABELS[s], replace(default, algo="flash", solver=s))
             for s in args.solvers]
    rows += [("shared trunk", "on" if on else "off", replace(default, share_trunk=on)) for on in (True, False)]
    rows = [(g, label + (" (default)" if s == default else ""), s) for g, label, s in rows]
    return [row for row in rows if not args.groups or row[0] in args.groups]


def describe_starts(starts: list[int]) -> str:
    """``"0–7 (mean 3.5)"``: the range of left boundaries a run visited, or ``"0"`` when fixed."""
    low, high = min(starts), max(starts)
    return str(low) if low == high else f"{low}–{high} (mean {statistics.mean(starts):.1f})"


def run_all(rows, args, root: Path, eval_file: Path) -> dict[tuple, dict]:
    """Every distinct (setting, seed) run once, in row order; returns the runs by run key."""
    plan = {}
    for _, label, setting in rows:
        for seed in args.seeds:
            plan.setdefault(setting.run_key(args, seed), (label, setting, seed))
    runs, started = {}, time.time()
    for index, (key, (label, setting, seed)) in enumerate(plan.items()):
        minutes = (time.time() - started) / 60
        eta = f", about {minutes / index * (len(plan) - index):.1f} min left" if index else ""
        print(f"[{index + 1}/{len(plan)}] {label}, seed {seed} ({minutes:.1f} min elapsed{eta})", flush=True)
        flags = setting.flags(args)
        name = f"{run_name(flags, seed)}-{setting.solver or 'own'}-trunk{'on' if setting.share_trunk else 'off'}"
        runs[key] = run_row(flags, seed, args, root, eval_file, name=name)
    return runs


def shared_runs(rows, args) -> dict[str, str]:
    """Each non-default row that reuses an earlier row's runs (same run key) → that earlier row's label."""
    owners, shared = {}, {}
    for _, label, setting in rows:
        owner = owners.setdefault(setting.run_key(args, args.seeds[0]), label)
        if owner != label and not label.endswith("(default)"):
            shared[label] = "the default row" if owner.endswith("(default)") else owner
    return shared


def summarise_row(group: str, label: str, setting: Setting, runs: list[dict], same_run_as: str | None = None) -> dict:
    """trainer_runs.summarise plus the windows visited, the trained NFE and the per-seed results."""
    row = summarise(label, str(setting.window), runs)
    starts = [h["window_start"] for h in runs[0]["history"]]
    return row | {"group": group, "setting": asdict(setting), "trained_nfe": setting.window,
                  "window_starts": ("random " if setting.strategy == "random" else "") + describe_starts(starts),
                  "mean_window_start": statistics.mean(h["window_start"] for r in runs for h in r["history"]),
                  "finals": [r["final"] for r in runs], "same_run_as": same_run_as}


def trunk_check(on_runs: list[dict], off_runs: list[dict]) -> dict:
    """Largest |Δ| between trunk-on and trunk-off runs of the same seeds, and whether the rewards agree.

    The trunk only changes how many rows the network evaluates, so every iteration's mean training
    reward and the final held-out reward must agree within ``TRUNK_TOLERANCE``. The advantages
    (logged rounded to 1e-6, and z-scored, which magnifies a reward's rounding by 1/std of its group)
    are reported, not judged.
    """
    reward = max(abs(a["reward_mean"] - b["reward_mean"]) for on, off in zip(on_runs, off_runs)
                 for a, b in zip(on["history"], off["history"]))
    advantage = max(abs(x - y) for on, off in zip(on_runs, off_runs) for a, b in zip(on["history"], off["history"])
                    for x, y in zip(a["advantages"], b["advantages"]))
    final = max(abs(on["final"] - off["final"]) for on, off in zip(on_runs, off_runs))
    return {"max_abs_reward_diff": reward, "max_abs_advantage_diff": advantage, "max_abs_final_diff": final,
            "tolerance": TRUNK_TOLERANCE, "identical": max(reward, final) <= TRUNK_TOLERANCE}


def row_line(r: dict) -> str:
    same = f" (same run as {r['same_run_as']})" if r["same_run_as"] else ""
    return (f"| {r['row']}{same} | {r['window_starts']} | {r['old_policy_nfe']:.1f} | {r['trained_nfe']} | "
            f"{r['network_evals_per_iteration']:.0f} | {r['rollout_s']:.2f} | {r['reward_s']:.2f} | "
            f"{r['update_s']:.2f} | {r['seconds']:.2f} | {r['final_mean']:.4f} ± {r['final_std']:.4f} |")


def trunk_sentence(rows: list[dict], check: dict) -> str:
    on, off = (next(r for r in rows if r["group"] == "shared trunk" and r["setting"]["share_trunk"] is s)
               for s in (True, False))
    exact = max(check["max_abs_reward_diff"], check["max_abs_final_diff"]) == 0
    verdict = ("bitwise identical" if exact else "identical up to float rounding") if check["identical"] \
        else "**DIFFERENT**"
    return (f"Rewards with and without the shared trunk are {verdict}: largest |Δ| per-iteration reward "
            f"{check['max_abs_reward_diff']:.2g}, advantage {check['max_abs_advantage_diff']:.2g}, held-out "
            f"{check['max_abs_final_diff']:.2g} (tolerance {check['tolerance']:g}). The trunk evaluates "
            f"{on['network_evals_per_iteration']:.0f} instead of {off['network_evals_per_iteration']:.0f} network rows "
            f"per iteration ({on['network_evals_per_iteration'] / off['network_evals_per_iteration']:.2f}×); rollout "
            f"{on['rollout_s']:.2f} s vs {off['rollout_s']:.2f} s ({on['rollout_s'] / off['rollout_s']:.2f}×).")


def to_markdown(rows: list[dict], info: dict, check: dict | None) -> str:
    a = info["args"]
    machine, model = info["machine"], info["model"]
    lines = ["# Ablations on the embedded model (shapes reward, CPU)", "",
             f"Command: `{info['command']}` ({info['minutes']:.1f} min). Machine: {machine['cpu']}, "
             f"{machine['cores']} cores, torch {machine['torch']} ({machine['torch_threads']} threads). Model: "
             f"`{model['folder']}` ({model['transformer_parameters']} transformer parameters, weights sha256 "
             f"{model['transformer_sha256']}…).", "",
             f"K = {a['iterations']} iterations, seeds {a['seeds']}, {a['prompts_per_iter']} prompts × group "
             f"{a['group_size']} per iteration, T = {a['steps']} steps; held-out: first {a['eval_prompts']} test "
             f"prompts × {a['eval_seeds']} seeds. Default row: MixGRPO, w = 4, progressive, τ = "
             f"{a['shift_interval']}, s = 1, Euler after the window, shared trunk (run once, shown in every group). "
             f"Seconds are medians per iteration; reward is the held-out shapes reward after K iterations, "
             f"mean ± std over seeds (start {rows[0]['start_mean']:.4f}).", ""]
    for group in GROUPS:
        members = [r for r in rows if r["group"] == group]
        if not members:
            continue
        lines += [f"## {group[0].upper()}{group[1:]}", "",
                  "| Setting | Window starts l | Old-policy NFE | Trained NFE | Network evals / it | Rollout s "
                  "| Reward s | Update s | s / it | Held-out reward at K (± std) |",
                  "|---|---|---|---|---|---|---|---|---|---|", *map(row_line, members), ""]
        if group == "shared trunk" and check is not None:
            lines += [trunk_sentence(rows, check), ""]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Held-out reward at K (± std over seeds) and seconds per iteration by phase, one bar per row."""
    from mixgrpo.plots import _pyplot, _save

    plt = _pyplot()
    labels = [f"{r['group']}: {r['row']}" for r in rows]
    y = list(range(len(rows)))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.32 * len(rows) + 1.5), sharey=True)
    left.barh(y, [r["final_mean"] for r in rows], xerr=[r["final_std"] for r in rows], color="tab:blue")
    left.axvline(rows[0]["start_mean"], color="grey", linestyle="--", label="before training")
    left.set(yticks=y, yticklabels=labels, xlabel="held-out shapes reward after K iterations")
    left.legend(fontsize=7)
    offset = [0.0] * len(rows)
    for phase, colour in (("rollout_s", "tab:orange"), ("reward_s", "tab:green"), ("update_s", "tab:red")):
        values = [r[phase] for r in rows]
        right.barh(y, values, left=offset, color=colour, label=phase[:-2])
        offset = [o + v for o, v in zip(offset, values)]
    right.set(xlabel="seconds per iteration (medians)")
    right.legend(fontsize=7)
    left.tick_params(axis="y", labelsize=7)
    _save(fig, path, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: defaults become {QUICK}")
    parser.add_argument("--iterations", type=int, default=16, help="K, training iterations per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--shift-interval", type=int, default=2, help="τ of every row but the τ group's")
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--intervals", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--strategies", nargs="+", default=["progressive", "random", "decay", "exp_decay", "frozen"])
    parser.add_argument("--solvers", nargs="+", default=list(SOLVER_LABELS), choices=list(SOLVER_LABELS))
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=None, help="groups to run (default: all)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-iter", type=int, default=4)
    parser.add_argument("--eval-every", type=int, default=0, help="0: held-out reward before and after only")
    parser.add_argument("--eval-prompts", type=int, default=24)
    parser.add_argument("--eval-seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if "--quick" in argv:
        parser.set_defaults(**QUICK)  # flags given explicitly still win
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    started = time.time()
    rows = ablation_rows(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = run_all(rows, args, root, write_eval_prompts(root, args.eval_prompts))
    shared = shared_runs(rows, args)
    results = [summarise_row(group, label, setting, [runs[setting.run_key(args, s)] for s in args.seeds],
                             shared.get(label)) for group, label, setting in rows]
    trunk = {s.share_trunk: [runs[s.run_key(args, seed)] for seed in args.seeds] for g, _, s in rows if g == "shared trunk"}
    check = trunk_check(trunk[True], trunk[False]) if len(trunk) == 2 else None
    info = {"command": shlex.join(["python", "-m", "benchmarks.ablations", *argv]), "minutes": (time.time() - started) / 60,
            "machine": machine_info(), "model": embedded_model_info(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    table = to_markdown(results, info, check)
    print(table, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablations.md").write_text(table)
    (args.out / "ablations.json").write_text(json.dumps({**info, "trunk_check": check, "rows": results}, indent=2) + "\n")
    plot(results, args.out / "ablations.png")
    if check is not None and not check["identical"]:
        raise AssertionError(f"shared trunk on/off changed the rewards: {check}")
    return {**info, "trunk_check": check, "rows": results}


if __name__ == "__main__":
    sys.exit(run_command(main))

"""benchmarks/ablations.py: which runs the rows share, the rollout options it binds, and a tiny real run."""

import json
import math
import statistics

import pytest

from benchmarks import ablations

SOLVER_GROUP = "solver after the window (Flash)"


@pytest.mark.core
def test_default_rows_run_each_computation_once():
    args = ablations.build_parser().parse_args([])
    rows = ablations.ablation_rows(args)
    assert len(rows) == 19 and {group for group, _, _ in rows} == set(ablations.GROUPS)
    by_label = {label: setting for _, label, setting in rows}
    # the default row sits in five groups (not the Flash solver group) and is one computation
    defaults = [s for label, s in by_label.items() if label.endswith("(default)")]
    assert len(defaults) == 5 and len({s.run_key(args, 0) for s in defaults}) == 1
    # exp_decay's τ(l) only shrinks past l = 13: over K = 16 at τ = 2 (l = 0..7) it is the default run
    assert by_label["exp_decay"].window_starts(args, 0) == [k // 2 for k in range(16)]
    assert by_label["exp_decay"].run_key(args, 0) == defaults[0].run_key(args, 0)
    assert by_label["frozen (l = 0)"].window_starts(args, 0) == [0] * 16
    assert by_label["s = 2"].window_starts(args, 0)[-1] == 14
    # 19 rows, 14 distinct runs per seed: default, w 1/2/6, τ 1/4, s 2, random, decay, frozen, 3 solvers, trunk off
    assert len({s.run_key(args, 0) for s in by_label.values()}) == 14
    assert ablations.shared_runs(rows, args) == {"exp_decay": "the default row"}


@pytest.mark.core
def test_solver_and_trunk_settings_become_trainer_flags():
    from trainer.config import parse_config

    args = ablations.build_parser().parse_args([])
    setting = ablations.Setting(algo="flash", solver="dpm2m_heun", share_trunk=False)
    config = parse_config(setting.flags(args))
    assert (config.algo, config.solver, config.share_trunk) == ("flash", "dpm2m_heun", False)
    default = parse_config(ablations.Setting().flags(args))
    assert (default.solver, default.share_trunk) == (None, True)  # the algorithm's own solver, trunk shared


def flash_nfe(left: int, window: int = 4, steps: int = 10, compression: float = 0.4) -> int:
    """docs/algorithm.md §3: steps 0..L, then n = ⌊max((T − L)·r̃, 1)⌋ compressed steps, L the last window step."""
    last = left + window - 1
    return last + 1 + math.floor(max((steps - last) * compression, 1))


@pytest.mark.trainer
def test_quick_run_counts_trunk_and_files(tmp_path):
    result = ablations.main(["--quick", "--groups", "window size w", SOLVER_GROUP, "shared trunk",
                             "--windows", "1", "4", "--solvers", "dpm2m_heun", "--out", str(tmp_path)])
    rows = {(r["group"], r["row"]): r for r in result["rows"]}
    T, G, N, lefts = 10, 2, 4, [0, 1]  # --quick: 10 steps, 2 groups of 4, τ = 1 over K = 2 iterations

    def evals_per_iteration(nfe, trunk=True):  # the trunk runs steps < l once per group
        return statistics.mean(G * (l + N * (nfe(l) - l)) if trunk else G * N * nfe(l) for l in lefts)

    for label, w in (("w = 1", 1), ("w = 4 (default)", 4)):
        row = rows[("window size w", label)]
        assert (row["old_policy_nfe"], row["trained_nfe"], row["window_starts"]) == (T, w, "0–1 (mean 0.5)")
        assert row["network_evals_per_iteration"] == evals_per_iteration(lambda l: T) == 77
    heun = rows[(SOLVER_GROUP, "DPM-Solver++ 2M Heun")]
    assert heun["old_policy_nfe"] == statistics.mean(map(flash_nfe, lefts)) == 6.5
    assert heun["network_evals_per_iteration"] == evals_per_iteration(flash_nfe) == 49

    on, off = rows[("shared trunk", "on (default)")], rows[("shared trunk", "off")]
    assert off["network_evals_per_iteration"] == evals_per_iteration(lambda l: T, trunk=False) == 80
    check = result["trunk_check"]
    assert check["identical"] and check["max_abs_reward_diff"] <= 1e-5 and check["max_abs_final_diff"] <= 1e-5
    assert on["final_mean"] == pytest.approx(off["final_mean"], abs=1e-5)
    assert on["seconds"] == rows[("window size w", "w = 4 (default)")]["seconds"]  # one run, shown twice

    table = (tmp_path / "ablations.md").read_text()
    for group, label in rows:
        assert f"| {label} |" in table
    assert table.count("\n| Setting |") == 3 and "Machine:" in table and "shapes-flux-tiny" in table
    assert "`python -m benchmarks.ablations --quick" in table and "identical" in table
    saved = json.loads((tmp_path / "ablations.json").read_text())
    assert len(saved["rows"]) == 5 and saved["machine"]["cores"] and saved["trunk_check"]["identical"]
    assert (tmp_path / "ablations.png").stat().st_size > 5000

"""The rollout benchmark's figures, on a tiny configuration (its timings are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

REPO = Path(__file__).resolve().parents[2]


def test_rollout_benchmark_counts(tmp_path):
    # Run it the way a user does, from the repository root (the repo root is not put on sys.path
    # for the tests: ComfyUI owns the top-level name `nodes`).
    subprocess.run([sys.executable, "-m", "benchmarks.rollout", "--iterations", "60", "--repeats", "1",
                    "--width", "8", "--latent", "4", "--device", "cpu", "--out", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True)
    rows = {r["row"]: r for r in json.loads((tmp_path / "rollout.json").read_text())["rows"]}
    n, T = 12, 25
    assert rows["DanceGRPO"]["network_evals_per_group"] == n * T
    assert rows["DanceGRPO"]["trained_steps"] == 14
    # 60 iterations at τ = 25 use l = 0, 1, 2 for 25, 25, 10 iterations; a group costs l + N·(T − l)
    mix = rows["MixGRPO"]
    expected = (25 * (n * T) + 25 * (1 + n * (T - 1)) + 10 * (2 + n * (T - 2))) / 60
    assert mix["network_evals_per_group"] == pytest.approx(expected)
    assert mix["network_evals_per_group"] < n * T == rows["MixGRPO, no shared trunk"]["network_evals_per_group"]
    assert rows["MixGRPO-Flash*"]["nfe_per_trajectory"] == 8
    assert (tmp_path / "rollout.md").read_text().count("| MixGRPO") == 4

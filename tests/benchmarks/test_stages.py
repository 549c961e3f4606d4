"""benchmarks/stages.py on a tiny budget: real trainers, rows side by side, the same-run check."""

import json

import pytest

from benchmarks import stages

pytestmark = pytest.mark.trainer


def test_checkpointing_rows_time_the_update_and_train_the_same_run(tmp_path):
    rows = stages.main(["--iterations", "2", "--groups", "checkpointing", "--out", str(tmp_path)])
    assert [r["row"] for r in rows] == ["off", "selective", "full"]
    assert all(r["same_run"] == "yes" for r in rows)  # recomputation changes no bit
    assert all(r["update_s"] > 0 and r["seconds"] >= r["rollout_s"] + r["update_s"] for r in rows)
    table = (tmp_path / "stages.md").read_text()
    assert table.count("\n| checkpointing |") == 3 and "CPU: " in table
    assert len(json.loads((tmp_path / "stages.json").read_text())["rows"]) == 3


def test_same_run_tells_rounding_from_a_different_run():
    a = [{"reward_mean": 0.5, "advantages": [1.0, -1.0], "updates": 2}]
    assert stages.same_run(a, [{"reward_mean": 0.5000001, "advantages": [1.0, -1.0], "updates": 2}], tolerance=1e-3)
    assert not stages.same_run(a, [{"reward_mean": 0.5000001, "advantages": [1.0, -1.0], "updates": 2}])
    assert not stages.same_run(a, [{"reward_mean": 0.6, "advantages": [1.0, -1.0], "updates": 2}], tolerance=1e-3)
    assert not stages.same_run(a, [{"reward_mean": 0.5, "advantages": [1.0, -1.0], "updates": 1}], tolerance=1e-3)

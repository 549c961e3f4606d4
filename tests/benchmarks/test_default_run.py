"""The default-run benchmark's phase split and report, on a seconds-long run."""

import pytest

from benchmarks import default_run
from mixgrpo.run_folder import RunFolder
from trainer.run import main

pytestmark = pytest.mark.trainer


def test_phases_add_up_to_the_wall_time_and_the_report_projects_it(tmp_path):
    (tmp_path / "eval.txt").write_text("a red circle\na blue square\n")
    main(["--iterations", "3", "--group-size", "4", "--prompts-per-iter", "2", "--steps", "8", "--window", "2",
          "--eval-prompts", str(tmp_path / "eval.txt"), "--eval-seeds", "2", "--run-dir", str(tmp_path / "runs"),
          "--name", "run"])
    folder = RunFolder(tmp_path / "runs" / "run")
    history, evaluations = folder.read_metrics(), folder.read_evaluations()
    assert [e["iteration"] for e in evaluations] == [0, 3] and all(e["seconds"] > 0 for e in evaluations)
    spent = default_run.phases(100.0, folder)
    assert spent["rollout"] == pytest.approx(sum(h["rollout_s"] for h in history))
    assert spent["held-out evaluations"] == pytest.approx(sum(e["seconds"] for e in evaluations))
    assert sum(spent.values()) == pytest.approx(100.0)
    summary = folder.read_summary()
    assert summary["rise"]["prompts"] == 2 and summary["rise"]["seeds"] == 2
    result = {"machine": {"cpu": "a CPU", "cores": 2, "torch_threads": 2},
              "model": {"transformer_sha256": "46dfa61a791764b9"}, "total_s": 100.0, "phases": spent,
              "iterations": 3, "before": summary["before"], "after": summary["after"], "rise": summary["rise"],
              "reference_s": 6.5, "projected_s": 200.0, "last_line": "held-out reward: …"}
    text = default_run.report(result)
    assert "100 s × 13 / 6.50 = 200 s" in text and "bar: 300 s; met" in text
    assert f"before {summary['before']:.3f} → after {summary['after']:.3f}" in text

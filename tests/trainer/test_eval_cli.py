"""``trainer.eval`` re-scores a finished run, base against trained, on seeds the run never saw."""

import json

import pytest
from conftest import small_run
from trainer import eval as trainer_eval
from trainer.run import main

pytestmark = pytest.mark.trainer


def test_eval_scores_base_and_trained_on_new_seeds_and_prints_the_paired_rise(tmp_path, capsys):
    (tmp_path / "eval.txt").write_text("a red circle\na blue square\na green triangle\n")
    summary = main(small_run(tmp_path, eval_prompts=tmp_path / "eval.txt", learning_rate=3e-3))
    run = tmp_path / "runs" / "run"
    rows = trainer_eval.main([str(run), "--seeds", "2", "--first-seed", "100"])
    table = (run / "eval.md").read_text()
    assert "3 prompts × seeds 100–101" in table and "Trained − base: " in table
    base, trained = rows["base"]["shapes"], rows["trained"]["shapes"]
    assert base != trained  # the LoRA changed the samples
    # the same prompts and seeds for both, none failed: the mean per-prompt difference is the difference of means
    rise = float(table.split("Trained − base: ")[1].split(" ± ")[0])
    assert rise == pytest.approx(trained - base, abs=5e-4)
    # other seeds than the run's own evaluation: the base model's mean differs from the run's "before"
    assert base != pytest.approx(summary["before"], abs=1e-9)
    assert json.loads((run / "eval_table.json").read_text()) == rows
    assert "Trained − base:" in capsys.readouterr().out

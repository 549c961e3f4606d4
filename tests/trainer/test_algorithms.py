"""Short real runs of every algorithm on the embedded model: reward up, numerics bar held."""

import json

import pytest

from conftest import small_run
from trainer.run import main

pytestmark = pytest.mark.trainer


@pytest.mark.parametrize("algo", ["mixgrpo", "flash", "flash_star", "dancegrpo"])
def test_short_run_raises_the_reward_and_holds_the_ratio_bar(tmp_path, algo):
    summary = main(small_run(tmp_path, algo=algo, iterations=8, steps=10, window=3, shift_interval=3,
                             group_size=6, prompts_per_iter=4, updates_per_iter=2, micro_batch=12,
                             learning_rate=1e-3, eval_prompts=""))
    rows = [json.loads(line) for line in (tmp_path / "runs" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    assert all(r["first_max_abs_log_ratio"] < 1e-5 for r in rows)  # rollout and training numerics agree
    assert all(r["updates"] == 2 for r in rows)
    assert summary["after"] > summary["before"], summary

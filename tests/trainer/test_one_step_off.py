"""One-step-off updates: iteration k trains on batch k − 1 with a truncated importance weight, and resumes exactly."""

import json
import shutil

import pytest
import torch

from conftest import assert_same_run, run_metrics, small_run
from trainer.config import parse_config
from trainer.loop import build
from trainer.loss import policy_log_probs
from trainer.one_step_off import PendingBatch, off_policy_correction
from trainer.run import main

pytestmark = pytest.mark.trainer


def test_the_correction_is_one_on_the_rollout_policy_and_the_truncated_ratio_once_it_moved(tmp_path):
    trainer = build(parse_config(small_run(tmp_path, group_size=3, prompts_per_iter=2)))
    plan = trainer.plan(trainer.windows.left)
    noise = torch.randn(2, *trainer.model.latent_shape(128, 128), generator=torch.Generator().manual_seed(0))
    cond = trainer.conditioning([0, 1])
    trainer.model.transformer.eval()
    rollout = trainer.rollout_members(plan, noise, cond, range(6), 3, 0)
    batch = PendingBatch(0, trainer.windows.left, [0, 1], torch.randn(6), rollout.transitions)
    sample_cond = {k: v.repeat_interleave(3, dim=0) for k, v in cond.items()}
    trainer.model.transformer.train()

    same, weights, ratios = off_policy_correction(trainer.velocity, batch, sample_cond, plan, micro_batch=4, cap=2.0)
    for t, proximal, w in zip(rollout.transitions, same, weights):  # the behaviour policy itself: w = 1
        assert (proximal.log_prob - t.log_prob).abs().max() < 1e-5 and (w - 1).abs().max() < 1e-5

    with torch.no_grad():  # one policy step later
        for p in trainer.params:
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    moved, weights, ratios = off_policy_correction(trainer.velocity, batch, sample_cond, plan, micro_batch=4, cap=2.0)
    every = []
    for t, proximal, w in zip(rollout.transitions, moved, weights):
        direct = policy_log_probs(trainer.velocity, t, sample_cond, plan)  # one pass, not in chunks of 4
        torch.testing.assert_close(proximal.log_prob, direct, rtol=0, atol=1e-5)
        ratio = torch.exp(direct - t.log_prob)
        torch.testing.assert_close(w, ratio.clamp(max=2.0), rtol=1e-4, atol=1e-6)
        every.append(ratio)
    every = torch.cat(every)
    assert (every - 1).abs().max() > 1e-3  # the policy did move: the weights are not all one
    assert ratios["importance_ratio_mean"] == pytest.approx(float(every.mean()), rel=1e-4)
    assert ratios["importance_ratio_max"] == pytest.approx(float(every.max()), rel=1e-4)


def test_each_iteration_trains_the_batch_before_it_and_a_resumed_run_repeats_the_run(tmp_path):
    main(small_run(tmp_path, iterations=4, checkpoint_every=2, pipeline="one-step-off", name="straight"))
    straight = tmp_path / "runs" / "straight"
    rows = run_metrics(straight)
    assert [row["updated_batch"] for row in rows] == [0, 1, 2, 3]
    assert rows[0]["updates"] == 0 and all(row["updates"] == 2 for row in rows[1:])
    assert "importance_ratio_mean" not in rows[0]
    for row in rows[1:]:
        # the PPO ratio is taken against the policy of now: the numerics bar holds off-policy too
        assert row["first_max_abs_log_ratio"] < 1e-5
        assert row["importance_ratio_max"] >= row["importance_ratio_mean"]
    # batch 1 trains under the policy that drew it (iteration 1 took no step); later batches are one step off
    # (at this learning rate a step moves the ratio by ~1e-5; the numerics floor is ~1e-7)
    assert rows[1]["importance_ratio_max"] == pytest.approx(1.0, abs=1e-6)
    assert all(row["importance_ratio_max"] > 1.0 + 5e-6 for row in rows[2:])
    assert rows[1]["window_start"] == 0 and rows[2]["window_start"] == 1  # the window follows the rollouts

    last = straight / "checkpoints" / "iter-000004"
    pending = json.loads((last / "state.json").read_text())["pending"]
    assert pending["iteration"] == 3 and (last / "pending.safetensors").is_file()  # the 4th batch waits

    resumed = tmp_path / "runs" / "resumed"  # the run as a kill after iteration 2's checkpoint left it
    shutil.copytree(straight, resumed)
    for later in ("checkpoints/iter-000004", "lora", "eval.json"):
        shutil.rmtree(resumed / later) if (resumed / later).is_dir() else (resumed / later).unlink()
    assert json.loads((resumed / "checkpoints/iter-000002/state.json").read_text())["pending"]["iteration"] == 1
    main(["--resume", str(resumed)])
    assert_same_run(straight, resumed, 4)


def test_on_policy_rows_have_no_off_policy_columns(tmp_path):
    main(small_run(tmp_path, iterations=1))
    row = run_metrics(tmp_path / "runs" / "run")[0]
    assert row["updates"] == 2 and not {"updated_batch", "importance_ratio_mean"} & set(row)
    assert not (tmp_path / "runs" / "run" / "checkpoints" / "iter-000001" / "pending.safetensors").exists()

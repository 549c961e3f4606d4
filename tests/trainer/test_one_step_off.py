"""One-step-off updates: iteration k trains on batch k − 1 with a truncated importance weight, and resumes exactly."""

import json
import shutil

import pytest
import torch

from conftest import assert_same_run, run_metrics, small_run
from trainer.config import parse_config
from trainer.loop import build
from trainer.loss import TransitionRows, policy_log_probs, window_loss
from trainer.one_step_off import proximal_log_probs
from trainer.run import main

pytestmark = pytest.mark.trainer


def test_the_correction_weighs_each_row_by_its_truncated_ratio_and_reads_the_proximal_policy_off_its_forward(tmp_path):
    trainer = build(parse_config(small_run(tmp_path, group_size=3, prompts_per_iter=2)))
    plan = trainer.plan(trainer.windows.left)
    noise = torch.randn(2, *trainer.model.latent_shape(128, 128), generator=torch.Generator().manual_seed(0))
    cond = trainer.conditioning([0, 1])
    trainer.model.transformer.eval()
    transitions = trainer.rollout_members(plan, noise, cond, range(6), 3, 0).transitions
    sample_cond = {k: v.repeat_interleave(3, dim=0) for k, v in cond.items()}
    trainer.model.transformer.train()
    with torch.no_grad():  # one policy step later
        for p in trainer.params:
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))

    rows = torch.tensor([4, 1, 5])  # a later optimizer step's rows; 7 on the busiest process: 3 passes of 3
    proximal = proximal_log_probs(trainer.velocity, transitions, rows, sample_cond, plan, micro_batch=3, most_rows=7)
    for t, logp in zip(transitions, proximal):
        direct = policy_log_probs(trainer.velocity, t, sample_cond, plan)  # every row in one pass
        torch.testing.assert_close(logp[rows], direct[rows], rtol=0, atol=1e-5)
        assert torch.isnan(logp[[0, 2, 3]]).all()

    t, adv = transitions[0], torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0])
    now = policy_log_probs(trainer.velocity, t, sample_cond, plan)
    ratio = torch.exp(now - t.log_prob)
    assert (ratio - 1).abs().max() > 1e-3  # the policy did move
    for cap in (2.0, float(ratio.median())):  # the cap truncates where it is below the ratio
        here = TransitionRows(t, sample_cond, adv, 1.0, importance_cap=cap)
        given = TransitionRows(t, sample_cond, adv, 1.0, importance_cap=cap, proximal=now)
        (loss_here, [stats_here]), (loss_given, [stats_given]) = (
            window_loss(trainer.velocity, [part], plan, clip_range=1e-4) for part in (here, given))
        assert stats_here.max_abs_log_ratio == 0.0  # π_prox is its own forward's: r = 1 exactly
        torch.testing.assert_close(stats_here.importance_ratios, ratio, rtol=1e-4, atol=1e-6)
        # r = 1: every term is −A, weighted by the truncated ratio
        expected = -(ratio.clamp(max=cap) * adv).mean()
        for loss in (loss_here, loss_given):
            assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4, abs=1e-7)


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

"""The scorer stage: overlapped jobs give the sequential scores in order, errors surface, auto picks by what rewards need."""

import threading

import pytest
import torch

from benchmarks.stages import same_run
from conftest import run_metrics
from test_http_judge import LATE_S, Judge, _flags, _rows
from trainer.run import main

from mixgrpo.rewards import RewardSet
from mixgrpo.rewards.base import Reward, RewardResult
from trainer.reward_stage import ScoringStage, resolve_mode

pytestmark = pytest.mark.trainer


class Brightness(Reward):
    """Scores an image by its mean; records the thread each call ran on."""

    name = "brightness"

    def __init__(self, needs: str = "cpu", fail_on: int | None = None):
        self.device_needs, self.fail_on, self.threads, self.calls = needs, fail_on, [], 0

    def score(self, images, prompts):
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        if self.calls == self.fail_on:
            raise RuntimeError("the reward model crashed")
        return RewardResult(images.mean(dim=(1, 2, 3)), [{"prompt": p} for p in prompts])


class Codec:
    """A stand-in latent codec: decoding is the identity (the stage under test is what is real)."""

    device = torch.device("cpu")

    def decode(self, latents):
        return latents.clone()


def batches():
    gen = torch.Generator().manual_seed(0)
    return [(torch.rand(4, 3, 8, 8, generator=gen), [f"prompt {g}"] * 4) for g in range(3)]


def scores_of(mode: str, reward: Reward):
    stage = ScoringStage(Codec(), RewardSet([(reward, 1.0)]), mode)
    for samples, prompts in batches():
        stage.submit(samples, prompts)
    try:
        return stage.collect(), stage
    finally:
        stage.close()


def test_overlapped_jobs_run_on_the_worker_and_join_in_order_as_sequential_ones():
    sequential, _ = scores_of("sequential", Brightness())
    worker_reward = Brightness()
    overlapped, stage = scores_of("overlapped", worker_reward)
    expected = torch.cat([samples.mean(dim=(1, 2, 3)) for samples, _ in batches()])
    assert torch.equal(sequential.raw["brightness"], expected)
    assert torch.equal(overlapped.raw["brightness"], expected)
    assert [d["prompt"] for d in overlapped.details["brightness"]] == [p for _, ps in batches() for p in ps]
    assert all(name.startswith("mixgrpo-scorer") for name in worker_reward.threads)
    assert stage.busy_s > 0 and stage.groups_per_job == 1


def test_a_reward_that_fails_on_the_worker_raises_at_collect():
    with pytest.raises(RuntimeError, match="the reward model crashed"):
        scores_of("overlapped", Brightness(fail_on=2))


def test_auto_overlaps_where_the_scorer_does_not_take_the_rollouts_processor():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_mode("auto", cpu, RewardSet([(Brightness("cpu"), 1.0)])) == "sequential"
    assert resolve_mode("auto", cpu, RewardSet([(Brightness("network"), 1.0)])) == "overlapped"
    assert resolve_mode("auto", cpu, RewardSet([(Brightness("network"), 1.0), (Brightness("gpu"), 1.0)])) == "sequential"
    assert resolve_mode("auto", gpu, RewardSet([(Brightness("cpu"), 1.0)])) == "overlapped"
    assert resolve_mode("sequential", gpu, RewardSet([(Brightness("cpu"), 1.0)])) == "sequential"
    with pytest.raises(ValueError, match="reward_stage must be one of auto, overlapped, sequential"):
        resolve_mode("async", cpu, RewardSet([]))


def answers_late(k: int, prompt: str) -> str:
    return "late"


def test_the_scorer_stage_hides_a_slow_judge_behind_the_rollout_and_changes_no_result(tmp_path):
    judge = Judge(answers_late)
    threading.Thread(target=judge.serve_forever, daemon=True).start()
    try:
        rows = scorer_runs(tmp_path, judge)
    finally:
        judge.shutdown()
    assert_overlap(tmp_path, rows)


def scorer_runs(tmp_path, judge, groups: int = 4) -> dict:
    rows = {}
    for mode in ("sequential", "overlapped"):
        (tmp_path / mode).mkdir()
        flags = _flags(tmp_path / mode, reward="http", iterations=2, prompts_per_iter=groups, steps=25,
                       reward_stage=mode) + [
            "--reward-option", f"http.url={judge.url}", "--reward-option", "http.concurrency=4"]
        main(flags)
        rows[mode] = _rows(tmp_path / mode / "runs" / "run")
    return rows


def assert_overlap(tmp_path, rows: dict, groups: int = 4) -> None:
    # the same run to float rounding (the overlapped rollout batches one prompt group at a time)
    assert same_run(run_metrics(tmp_path / "sequential" / "runs" / "run"),
                    run_metrics(tmp_path / "overlapped" / "runs" / "run"), tolerance=1e-3)
    assert all(r["first_max_abs_log_ratio"] < 1e-5 for r in rows["overlapped"])
    for sequential, overlapped in zip(rows["sequential"], rows["overlapped"]):
        # each group's answers take LATE_S on the scorer's own clock, in either mode
        assert sequential["scorer_s"] >= groups * LATE_S and overlapped["scorer_s"] >= groups * LATE_S
        assert sequential["reward_s"] >= sequential["scorer_s"]  # all of it on the critical path
        # overlapped, group g's scoring runs beside group g + 1's rollout: at least half of what can hide did
        hideable = (groups - 1) * min(sequential["rollout_s"] / groups, LATE_S)
        assert sequential["reward_s"] - overlapped["reward_s"] >= hideable / 2
    # (the whole iteration's gain is benchmarks/stages.py's: this judge's threads share the rollout's GIL)

"""The scorer stage: overlapped jobs give the sequential scores in order, errors surface, auto picks by what rewards need."""

import threading

import pytest
import torch

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
    return stage.collect(), stage


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

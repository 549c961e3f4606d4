"""Reward registry: specs, caching, the shapes reward by name."""

import pytest
import torch

from mixgrpo.rewards import RewardSpecError, available_rewards, get_reward, load_rewards, parse_reward_spec
from mixgrpo.shapes import render_batch

pytestmark = pytest.mark.models


def test_parse_reward_spec():
    assert parse_reward_spec("hpsv2.1:1,pickscore:1,shapes:0.5") == [("hpsv2.1", 1.0), ("pickscore", 1.0),
                                                                      ("shapes", 0.5)]
    assert parse_reward_spec(" shapes ") == [("shapes", 1.0)]
    for bad, message in [("shapes:x", "not a number"), ("shapes:-1", "≥ 0"), (" , ", "no reward named")]:
        with pytest.raises(RewardSpecError, match=message):
            parse_reward_spec(bad)


def test_unknown_reward_lists_the_available_ones():
    assert {"shapes", "http"} <= set(available_rewards())
    with pytest.raises(RewardSpecError, match="unknown reward 'imagereward2'; available: .*shapes"):
        get_reward("imagereward2")


def test_shapes_by_name_is_cached_and_scores():
    (reward, weight), = load_rewards("shapes:0.5")
    assert weight == 0.5 and reward is get_reward("shapes")  # loaded once per process
    prompts = ["a red circle", "two blue squares"]
    good = reward(render_batch(prompts, seed=0), prompts)
    swapped = reward(render_batch(prompts[::-1], seed=0), prompts)
    assert good.scores.dtype == torch.float32 and good.scores.min() > 0.9
    assert swapped.scores.max() < 0.5 and not good.failed.any()
    assert {"presence", "colour", "count"} <= set(good.details[0])


def test_reward_options_split_at_the_last_dot_so_dotted_reward_names_take_options():
    from mixgrpo.rewards.registry import parse_reward_options

    parsed = parse_reward_options(["hpsv2.1.checkpoint=/w/HPS_v2.1_compressed.pt", "http.url=http://h:8/s",
                                   "http.timeout=5"])
    assert parsed == {"hpsv2.1": {"checkpoint": "/w/HPS_v2.1_compressed.pt"},
                      "http": {"url": "http://h:8/s", "timeout": 5}}

"""Reward registry shared by the trainer and the ComfyUI scorer node.

``load_rewards("shapes:1,http:0.5", options={"http": {"url": ...}})`` returns a :class:`RewardSet` of
``(reward, weight)`` pairs; each reward maps images ``[B, 3, H, W]`` in [0, 1] and their prompts to
float32 scores, NaN where scoring failed, and the set combines them (weighted total, normalised
scores, per-category means).
"""

from .base import Normalization, Reward, RewardResult
from .reward_set import RewardScores, RewardSet, weighted_mean
from .registry import (RewardSpecError, available_rewards, get_reward, load_rewards, parse_reward_options,
                       parse_reward_spec, register, reward_option_names)

__all__ = ["Normalization", "Reward", "RewardResult", "RewardScores", "RewardSet", "RewardSpecError", "available_rewards", "get_reward",
           "load_rewards", "parse_reward_options", "parse_reward_spec", "register", "reward_option_names",
           "weighted_mean"]

"""MixGRPO core: time grids, sampling steps, window schedules, mixed SDE/ODE rollouts, GRPO maths.

Pure PyTorch. Never imports ComfyUI or diffusers, so the node pack and the trainer share it.
"""

from .algorithms import ALGORITHMS, Algorithm, algorithm_names, get_algorithm, register_algorithm
from .errors import ImageInputError, MixGRPOError, ModelLoadError, PromptError, ResumeError, ScheduleError
from .grpo import group_advantages, group_zscore, kl_to_reference, ppo_clip_loss
from .plan import SamplingPlan, build_plan, dance_train_steps, plan_from_sigmas
from .rollout import Rollout, StepInfo, Transition, mixed_rollout, transition_log_prob
from .schedule import (
    NFECount,
    compress_after,
    flash_nfe,
    flux_mu,
    flux_shift,
    flux_sigma_schedule,
    shift_time,
    sigma_schedule,
    sigma_to_timestep,
    timestep_to_sigma,
    uniform_times,
    unshift_sigma,
)
from .windows import STRATEGIES, WindowConfig, WindowSchedule, WindowStrategy, register_strategy, strategy_names

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS", "Algorithm", "STRATEGIES", "algorithm_names", "get_algorithm", "register_algorithm", "WindowStrategy", "register_strategy", "strategy_names", "ImageInputError", "MixGRPOError", "ModelLoadError", "PromptError", "NFECount", "ResumeError", "Rollout", "SamplingPlan",
    "ScheduleError", "StepInfo", "Transition", "WindowConfig", "WindowSchedule", "build_plan",
    "compress_after", "dance_train_steps", "flash_nfe", "flux_mu", "flux_shift", "flux_sigma_schedule",
    "group_advantages", "group_zscore", "kl_to_reference", "mixed_rollout", "plan_from_sigmas", "ppo_clip_loss",
    "shift_time", "sigma_schedule", "sigma_to_timestep", "timestep_to_sigma", "transition_log_prob",
    "uniform_times", "unshift_sigma",
]

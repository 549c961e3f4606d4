"""MixGRPO core, shared by the ComfyUI node pack and the trainer (it imports neither, nor ComfyUI).

- :mod:`mixgrpo.algorithm`: the maths (σ grids, steps, windows, algorithms, plans, rollouts, GRPO),
  pure PyTorch; its public names are re-exported here;
- :mod:`mixgrpo.models`: diffusers adapters; :mod:`mixgrpo.rewards`: rewards and reward sets;
- :mod:`mixgrpo.shapes`: the demo shapes world;
- :mod:`mixgrpo.evaluation` (held-out evaluation) and :mod:`mixgrpo.run_folder` (a run's files).
"""

from .algorithm.algorithms import ALGORITHMS, Algorithm, algorithm_names, get_algorithm, register_algorithm
from .errors import ImageInputError, MixGRPOError, ModelLoadError, PromptError, ResumeError, ScheduleError
from .algorithm.grpo import group_advantages, group_zscore, kl_to_reference, ppo_clip_loss
from .algorithm.plan import SamplingPlan, build_plan, dance_train_steps, plan_from_sigmas
from .algorithm.rollout import Rollout, StepInfo, Transition, mixed_rollout, transition_log_prob
from .algorithm.schedule import (
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
from .algorithm.windows import STRATEGIES, WindowConfig, WindowSchedule, WindowStrategy, register_strategy, strategy_names

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS", "Algorithm", "STRATEGIES", "algorithm_names", "get_algorithm", "register_algorithm", "WindowStrategy", "register_strategy", "strategy_names", "ImageInputError", "MixGRPOError", "ModelLoadError", "PromptError", "NFECount", "ResumeError", "Rollout", "SamplingPlan",
    "ScheduleError", "StepInfo", "Transition", "WindowConfig", "WindowSchedule", "build_plan",
    "compress_after", "dance_train_steps", "flash_nfe", "flux_mu", "flux_shift", "flux_sigma_schedule",
    "group_advantages", "group_zscore", "kl_to_reference", "mixed_rollout", "plan_from_sigmas", "ppo_clip_loss",
    "shift_time", "sigma_schedule", "sigma_to_timestep", "timestep_to_sigma", "transition_log_prob",
    "uniform_times", "unshift_sigma",
]

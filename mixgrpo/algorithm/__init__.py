"""The algorithm's maths (docs/algorithm.md): σ grids, sampling steps, windows, plans, rollouts, GRPO.

Pure PyTorch, no model and no reward: :mod:`.schedule` (grids, Flash compression, NFE),
:mod:`.steps` (ODE/SDE steps, log-probabilities), :mod:`.windows` (window strategies and the
schedule), :mod:`.algorithms` (the algorithm registry), :mod:`.plan` (which step does what),
:mod:`.rollout` (the mixed SDE/ODE rollout), :mod:`.grpo` (advantages, PPO-clip, KL),
:mod:`.seeds` (named random streams) and :mod:`.denoiser_sampling` (sampling with a host's denoiser).
"""

"""One training iteration: rollout → decode and score → group advantages → PPO-clip updates → next window.

The run around it (resume, evaluations, checkpoints, export) is :func:`trainer.loop.train`.
One iteration (docs/algorithm.md §3–4):

1. ``prompts_per_iter`` prompts, each a group of ``group_size`` samples sharing one initial noise;
   the mixed SDE/ODE rollout runs the pre-window trunk once per group and records the window.
2. Images are decoded and scored by every reward; failed (NaN) samples are dropped with a warning.
3. Advantages: z-score per reward within each group, weighted, clamped.
4. ``updates_per_iter`` optimizer steps over disjoint parts of the samples (micro-batches with
   gradient accumulation); loss ``mean(max(−A·r, −A·clip(r, 1 ± ε))) + β·KL``. On the first
   micro-batch the policy is the rollout policy, so ``max|log r|`` is logged as the numerics bar.
5. The window schedule advances.

With ``--pipeline one-step-off`` step 4 trains the previous iteration's batch while this batch is
scored, and this batch waits for the next iteration (:mod:`trainer.one_step_off`).

Every random draw of an iteration derives from (seed, iteration, purpose) (:mod:`mixgrpo.algorithm.seeds`), so a resumed
run repeats exactly.
"""

from __future__ import annotations

import time
import warnings

import torch

from mixgrpo import WindowSchedule, build_plan, dance_train_steps, get_algorithm, group_advantages, mixed_rollout
from mixgrpo.algorithm import seeds
from mixgrpo.algorithm.rollout import repeat_batch
from mixgrpo.errors import TrainingStopped
from mixgrpo.models.compile import CompileClock
from mixgrpo.models.gpu import autocast_dtype
from mixgrpo.rewards import RewardSet, weighted_mean

from .config import TrainConfig
from .data import PromptSampler
from .phases import phase
from .one_step_off import PendingBatch
from .processes import Processes, open_processes
from .reward_stage import ScoringStage
from .signals import IterationAbandoned
from .update import PolicyUpdate


class Trainer(PolicyUpdate):
    """The model, rewards, optimizer, prompt order, window schedule and history of one run.

    :meth:`next_iteration` runs one iteration on the next prompts; :meth:`state_dict` is what a
    checkpoint keeps besides the weights and the optimizer.
    """

    def __init__(self, config: TrainConfig, model, rewards: RewardSet, prompts: list[str],
                 params: list[torch.nn.Parameter], processes: Processes | None = None):
        self.cfg, self.model, self.rewards, self.prompts = config, model, rewards, prompts
        self.sampler = PromptSampler(len(prompts), config.seed)
        self.history: list[dict] = []
        self.algorithm = get_algorithm(config.algo)
        self.windows = WindowSchedule(num_steps=config.steps, size=config.window,
                                      strategy=self.algorithm.strategy(config.window_strategy),
                                      shift_interval=config.shift_interval, stride=config.stride,
                                      start=config.window_start, seed=config.seed)
        self.cond_cache: dict[int, dict[str, torch.Tensor]] = {}
        self.nan_updates = 0
        self.failed_iterations = 0  # consecutive iterations in which every reward failed
        self.pending: PendingBatch | None = None  # one-step-off: the batch the next iteration trains on
        self.processes = processes or open_processes(config)
        self.processes.prepare(model, config.full_finetune)  # DDP or FSDP2 (FSDP2 replaces the parameters by their shards)
        model.autocast_dtype = autocast_dtype(config.mixed_precision, model.device)
        self.compile_clock = CompileClock().start() if config.compile else None
        #: one forward and backward for all window transitions of a micro-batch (else one per transition)
        self.batch_transitions = config.batch_transitions
        #: called with the iteration's seconds so far at its safe points (before the update): may abandon it
        self.stop_point = None
        self.params = params if self.processes.sharded is None else \
            [p for p in model.transformer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)

    # -- state -------------------------------------------------------------------------------
    @property
    def named_params(self) -> dict[str, torch.nn.Parameter]:
        """The trained parameters by their name in the transformer (what a checkpoint stores)."""
        names = {id(p): n for n, p in self.model.transformer.named_parameters()}
        return {names[id(p)]: p for p in self.params}

    def checkpoint_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The trained weights and the optimizer state, whole and keyed by parameter name (unsharded runs)."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        return (get_model_state_dict(self.model.transformer, options=options),
                get_optimizer_state_dict(self.model.transformer, self.optimizer, options=options))

    def state_dict(self, iteration: int) -> dict:
        return {"iteration": iteration, "prompt_cursor": self.sampler.cursor, "windows": self.windows.state_dict(),
                "history": self.history, "pending": None if self.pending is None else self.pending.state()}

    def pending_tensors(self) -> dict[str, torch.Tensor] | None:
        """The pending batch's tensors, every process's rows (every process calls it): what a checkpoint adds."""
        return None if self.pending is None else self.pending.tensors(self.processes.gather)

    def load_state_dict(self, state: dict) -> int:
        """Restore the prompt order, windows, history and pending batch; returns the iteration to go on from."""
        self.sampler.cursor = state["prompt_cursor"]
        self.windows.load_state_dict(state["windows"])
        self.history = list(state["history"])
        pending = state.get("pending")
        self.pending = None if pending is None else PendingBatch.restore(
            pending, pending["tensors"], self.processes.my_samples(len(pending["tensors"]["advantages"])),
            self.model.device)
        return state["iteration"]

    def next_iteration(self, iteration: int) -> dict:
        """Iteration ``iteration`` on the next prompts; its row joins :attr:`history`.

        A run stopped inside it (:class:`TrainingStopped`, or a stop request abandoning it at a safe
        point) gives the prompts back, so the checkpoint written then makes a resumed run repeat it.
        """
        cursor = self.sampler.cursor
        try:
            with self.processes.guard():
                record = self.iteration(iteration, self.sampler.take(self.cfg.prompts_per_iter))
        except (TrainingStopped, IterationAbandoned):
            self.sampler.cursor = cursor
            raise
        self.history.append(record)
        return record

    # -- pieces ------------------------------------------------------------------------------
    def plan(self, left: int):
        """The rollout plan with the window at ``left``; unset η, solver, compression: the algorithm's own."""
        cfg = self.cfg
        return build_plan(cfg.algo, num_steps=cfg.steps, shift=cfg.shift, window_start=left, window_size=cfg.window,
                          eta=cfg.eta, solver=cfg.solver, compression=cfg.compression)

    def conditioning(self, prompt_ids: list[int]) -> dict[str, torch.Tensor]:
        """Text conditioning per prompt, encoded once and cached (text encoders run only for new prompts).

        A model that cached every prompt already (:meth:`~mixgrpo.models.FlowModelAdapter.cache_prompts`,
        on a GPU) serves them from CPU memory, moved to the GPU for this batch only.
        """
        if self.model.prompt_cache is not None:
            return self.model.encode_prompts([self.prompts[i] for i in prompt_ids])
        missing = [i for i in dict.fromkeys(prompt_ids) if i not in self.cond_cache]
        if missing:
            encoded = self.model.encode_prompts([self.prompts[i] for i in missing])
            for row, i in enumerate(missing):
                self.cond_cache[i] = {k: v[row:row + 1] for k, v in encoded.items()}
        return {k: torch.cat([self.cond_cache[i][k] for i in prompt_ids]) for k in self.cond_cache[prompt_ids[0]]}

    def trained_rows(self, samples: range, total: int, iteration: int, steps: list[int]) -> dict[int, torch.Tensor] | None:
        """DanceGRPO: each sample trains its own random subset of steps (None: every sample every step).

        Subsets are drawn for all ``total`` samples of the iteration, then this process's ``samples``
        are taken (local row indices), so the split between processes changes nothing.
        """
        if not self.algorithm.sde_everywhere:
            return None
        gen = seeds.generator(self.cfg.seed, iteration, "dance_steps")
        picks = dance_train_steps(self.cfg.steps, total, self.cfg.dance_fraction, gen,
                                  first_only=self.cfg.dance_first)[samples.start:samples.stop]
        return {s: torch.tensor([r for r in range(len(picks)) if s in picks[r]], dtype=torch.long) for s in steps}

    def velocity(self, x, sigma, cond):
        """The policy's velocity (under the model's autocast on a GPU: rollout, update and evaluation alike)."""
        return self.model.velocity(x, sigma, cond)

    def rollout_members(self, plan, noise, cond, members: range, n: int, iteration: int, on_run=None,
                        most_groups: int | None = None):
        """Roll out the samples ``members`` (global indices, group-major) of this process.

        Each group's members share the group's noise and trunk; consecutive groups with the same
        number of members here (at most ``most_groups``) run as one batch, handed to ``on_run(samples,
        member ids)`` as soon as it is done. Per-member generators make every sample's trajectory
        independent of how samples are split between processes.
        """
        from mixgrpo.algorithm.rollout import Rollout, Transition

        cfg, model = self.cfg, self.model
        runs = rollout_runs(members, len(noise), n, most_groups)
        if self.processes.sharded is not None:  # FSDP2: every process makes as many model calls
            most = max(len(rollout_runs(self.processes.samples_of(rank, len(noise) * n), len(noise), n, most_groups))
                       for rank in range(self.processes.world))
            for _ in range(most - len(runs)):  # a stand-in trajectory, discarded
                mixed_rollout(self.velocity, noise[:1].to(model.device), plan, {k: v[:1] for k, v in cond.items()})
        outs = []
        for groups, count in runs:
            ids = [m for g in groups for m in range(max(members.start, g * n), min(members.stop, (g + 1) * n))]
            gens = [seeds.generator(cfg.seed, iteration, "sde_noise", m, device=model.device) for m in ids]
            group_cond = {k: v[groups] for k, v in cond.items()}
            outs.append(mixed_rollout(self.velocity, noise[groups].to(model.device), plan, group_cond,
                                      group_size=count, generator=gens, share_trunk=cfg.share_trunk))
            if on_run is not None:
                on_run(outs[-1].samples, ids)
        if len(outs) == 1:
            return outs[0]
        transitions = [Transition(t.step, t.sigma, t.sigma_next, *(torch.cat([o.transitions[i][f] for o in outs])
                                                                    for f in (3, 4, 5)))
                       for i, t in enumerate(outs[0].transitions)]
        return Rollout(samples=torch.cat([o.samples for o in outs]), transitions=transitions, nfe=outs[0].nfe,
                       network_evals=sum(o.network_evals for o in outs), num_groups=len(noise), group_size=n)

    # -- the iteration -----------------------------------------------------------------------
    def iteration(self, iteration: int, prompt_ids: list[int]) -> dict:
        cfg, model = self.cfg, self.model
        on_gpu = model.device.type == "cuda"
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(model.device)
        if self.compile_clock is not None:
            self.compile_clock.take()  # compiled before this iteration (an evaluation's shapes): not its time
        started = time.perf_counter()
        left = self.windows.left
        plan = self.plan(left)
        groups, n = len(prompt_ids), cfg.group_size
        latent = model.latent_shape(cfg.resolution, cfg.resolution)
        noise = torch.randn(groups, *latent, generator=seeds.generator(cfg.seed, iteration, "initial_noise"))
        cond = self.conditioning(prompt_ids)
        mine = self.processes.my_samples(groups * n)
        model.transformer.eval()
        texts = [self.prompts[i] for i in prompt_ids for _ in range(n)]
        scorer = ScoringStage(model, self.rewards, cfg.reward_stage)
        one_step_off, update_s = cfg.pipeline == "one-step-off", 0.0
        try:
            with phase("rollout", model.device):
                rollout = self.rollout_members(plan, noise, cond, mine, n, iteration,
                                               most_groups=None if one_step_off else scorer.groups_per_job,
                                               on_run=lambda samples, ids: scorer.submit(samples, [texts[m] for m in ids]))
            rollout_s = time.perf_counter() - started
            self.safe_point(started)
            if one_step_off:  # the previous batch trains while the scorer works on this one
                stats = self.update_pending()
                update_s = time.perf_counter() - started - rollout_s
            local = scorer.collect().normalized()
        finally:
            scorer.close()
        rewards = {name: self.processes.gather(r.to(self.processes.device)).cpu() for name, r in local.items()}
        weights = self.rewards.weights
        adv = group_advantages(rewards, n, weights, clip=cfg.advantage_clip, aggregate=cfg.advantage_aggregation)
        failed = torch.isnan(adv)
        self.check_failures(failed, iteration)
        reward_s = time.perf_counter() - started - rollout_s - update_s

        if one_step_off:
            self.pending = PendingBatch(iteration, left, list(prompt_ids), adv, rollout.transitions)
        else:
            self.safe_point(started)
            my_cond = {k: v[mine.start:mine.stop] for k, v in repeat_batch(cond, n).items()}
            # with every sample failed, no part has a valid sample: no optimizer step (updates 0)
            with phase("update", model.device):
                stats = self.update(rollout.transitions, plan, my_cond, adv, iteration, mine)
            update_s = time.perf_counter() - started - rollout_s - reward_s
        self.windows.advance()
        raw = {name: float(torch.nanmean(r)) for name, r in rewards.items()}
        gpu = {"peak_memory_gib": round(torch.cuda.max_memory_allocated(model.device) / 2**30, 3)} if on_gpu else {}
        compiled = {"compile_s": round(self.compile_clock.take(), 3)} if self.compile_clock is not None else {}
        return {"iteration": iteration + 1, "world_size": self.processes.world, "sharding": self.processes.sharding,
                "window_start": left, "nfe": rollout.nfe,
                "network_evals": int(self.processes.gather(torch.tensor([rollout.network_evals],
                                                                        device=self.processes.device)).sum()),
                "reward": raw,
                "advantages": [round(a, 6) for a in adv.tolist()],
                "reward_mean": weighted_mean(raw, weights),
                "failed_samples": int(failed.sum()), "rollout_s": rollout_s, "reward_s": reward_s,
                "scorer_s": scorer.busy_s,
                "update_s": update_s,
                "seconds": time.perf_counter() - started, **stats, **gpu, **compiled}

    def safe_point(self, started: float) -> None:
        """A point where the iteration can be dropped (no weight changed yet): :attr:`stop_point` decides."""
        if self.stop_point is not None:
            self.stop_point(time.perf_counter() - started)

    def check_failures(self, failed: torch.Tensor, iteration: int) -> None:
        """Warn about samples whose reward failed; stop after ``max_failed_iterations`` wholly failed iterations.

        A failed sample (NaN reward: the judge timed out, answered 500 or garbage) is left out of its
        group's statistics. When every sample failed the iteration has nothing to learn from, so its
        update is skipped; that many in a row means the reward is down, and the run stops.
        """
        if not failed.all():
            self.failed_iterations = 0
            if failed.any():
                warnings.warn(f"iteration {iteration + 1}: {int(failed.sum())} of {len(failed)} sample(s) had no "
                              "valid reward and are left out of their groups.")
            return
        self.failed_iterations += 1
        warnings.warn(f"iteration {iteration + 1}: every sample's reward failed; its update is skipped "
                      f"({self.failed_iterations} such iteration(s) in a row).")
        if self.failed_iterations >= self.cfg.max_failed_iterations:
            raise TrainingStopped(
                f"every sample's reward failed in {self.failed_iterations} consecutive iterations (max_failed_iterations="
                f"{self.cfg.max_failed_iterations}); check the reward ({self.cfg.reward}): is its server up and "
                "answering {'score': number}? Then resume the run.")


def rollout_runs(members: range, groups: int, n: int, most_groups: int | None = None) -> list[tuple[list[int], int]]:
    """``members`` (global sample indices, group-major) as runs of consecutive groups with the same
    number of members here, at most ``most_groups`` each: ``[(groups, members per group), …]``, one
    batched rollout each."""
    runs: list[tuple[list[int], int]] = []
    for g in range(groups):
        count = len(range(max(members.start, g * n), min(members.stop, (g + 1) * n)))
        if count == 0:
            continue
        if runs and runs[-1][1] == count and (most_groups is None or len(runs[-1][0]) < most_groups):
            runs[-1][0].append(g)
        else:
            runs.append(([g], count))
    return runs

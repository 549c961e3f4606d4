"""The PPO-clip update of one rollout batch: parts, micro-batches, gradient accumulation, optimizer steps.

:class:`PolicyUpdate` is the updater stage of :class:`trainer.iteration.Trainer`. The loss of a
micro-batch is :func:`trainer.loss.window_loss`; what surrounds it here is the bookkeeping of
several processes: which rows each trains, stand-in rows with weight 0 so that every process makes
the same passes, world-scaled weights, gradient synchronisation and the non-finite-gradient guard.
"""

from __future__ import annotations

import math
import warnings

import torch

from mixgrpo.algorithm import seeds
from mixgrpo.algorithm.rollout import repeat_batch, select_rows
from mixgrpo.errors import TrainingStopped

from .loss import TransitionRows, window_loss
from .one_step_off import proximal_log_probs
from .phases import phase


class PolicyUpdate:
    """The update methods of :class:`trainer.iteration.Trainer` (its model, optimizer, processes and config)."""

    def policy_backward(self, transitions, plan, cond, adv, rows: torch.Tensor, dance_rows, scale: float,
                        stand_in: torch.Tensor | None = None, last: bool = True,
                        off_policy: bool = False, proximal: list[torch.Tensor] | None = None) -> dict | None:
        """Back-propagate ``scale ·`` the window loss (:mod:`trainer.loss`) of the samples ``rows``.

        Each transition's rows get the weight of their share of the (sample, step) terms; the passes
        are one per transition, or one for all when :attr:`batch_transitions` (same gradient). With
        ``stand_in`` rows (several processes) a transition with no row to train still runs, on them
        with weight 0, so every process makes the same passes. Gradients synchronise on the last
        pass when ``last``. ``off_policy``: the rows train against ``proximal`` (per transition, every
        row's ``log π_prox``; None: their own forward's) with truncated importance weights
        (:mod:`trainer.one_step_off`).
        """
        steps = []
        for i, transition in enumerate(transitions):
            chosen = rows if dance_rows is None else rows[torch.isin(rows, dance_rows[transition.step])]
            if len(chosen) or stand_in is not None:
                steps.append((i, transition, chosen))
        total = sum(len(chosen) for _, _, chosen in steps)
        if total == 0 and stand_in is None:
            return None
        parts = []
        for i, t, chosen in steps:
            picked = chosen if len(chosen) else stand_in
            parts.append(TransitionRows(select_rows(t, picked), {k: v[picked] for k, v in cond.items()},
                                        adv[chosen] if len(chosen) else torch.zeros(len(stand_in)),
                                        scale * len(chosen) / total if len(chosen) else 0.0,
                                        self.cfg.importance_cap if off_policy else None,
                                        None if proximal is None or not len(chosen) else proximal[i][chosen]))
        passes = [parts] if self.batch_transitions else [[part] for part in parts]
        stats = []
        for j, group in enumerate(passes):
            with self.processes.gradient_sync(last and j == len(passes) - 1):
                loss, group_stats = window_loss(self.velocity, group, plan, self.cfg.clip_range, self.cfg.kl_beta,
                                                self.model.reference)
                loss.backward()
            stats += group_stats
        real = [(len(chosen), s) for (_, _, chosen), s in zip(steps, stats) if len(chosen)]
        if total == 0:
            return None
        return {"clip_fraction": sum(n * s.clip_fraction for n, s in real) / total,
                "max_abs_log_ratio": max(s.max_abs_log_ratio for _, s in real),
                "kl": sum(n * s.kl for n, s in real) / total,
                "importance_ratios": [s.importance_ratios for _, s in real if s.importance_ratios is not None]}

    def update(self, transitions, plan, cond, adv_all: torch.Tensor, iteration: int, samples: range,
               off_policy: bool = False) -> dict:
        """PPO-clip updates on this process's ``samples`` (``cond`` is sliced, ``adv_all`` holds every sample's),
        rolled out in ``iteration`` (its seeds order the parts); ``off_policy``: a batch rolled out by an
        earlier policy, corrected as :mod:`trainer.one_step_off` says (its rows' ratios are logged).

        The valid samples (reward not NaN) are split into ``K = min(updates_per_iter, most valid on
        one process)`` parts, one optimizer step each; a step's loss is the mean over every process's
        rows in its part, so failed samples on one process change nothing but their own absence.
        Every process makes the same passes whatever its rewards, since under DDP or FSDP a missing
        pass leaves the others waiting in a collective: each part runs as many micro-batches as the
        process with the most there, a micro-batch with nothing to train running on a stand-in row
        with weight 0 (:meth:`policy_backward`). Each process reads the others' counts off ``adv_all``.
        """
        cfg, world = self.cfg, self.processes.world
        adv = adv_all[samples.start:samples.stop]
        valid = torch.nonzero(~torch.isnan(adv)).flatten()
        counts = (~torch.isnan(adv_all)).view(world, -1).sum(dim=1).tolist()  # valid samples per process
        steps_here = min(cfg.updates_per_iter, max(counts))
        self.model.transformer.train()
        order = valid[torch.randperm(len(valid), generator=seeds.generator(cfg.seed, iteration, "update_order"))]
        dance_rows = self.trained_rows(samples, len(adv_all), iteration, [t.step for t in transitions])
        stand_in = torch.tensor([0]) if world > 1 else None
        parts = order.tensor_split(steps_here) if steps_here else ()
        proximal = None
        if off_policy and len(parts) > 1:  # the later steps' rows need π_prox before the first step
            most = max(sum(part_size(n, steps_here, i) for i in range(1, steps_here)) for n in counts)
            proximal = proximal_log_probs(self.velocity, transitions, torch.cat(parts[1:]), cond, plan,
                                          cfg.micro_batch, most)
        first, clip_fractions, kls, norms, ratios = None, [], [], [], []
        for index, part in enumerate(parts):
            self.optimizer.zero_grad(set_to_none=True)
            micros = list(part.split(cfg.micro_batch))
            sizes = [part_size(n, steps_here, index) for n in counts]  # this part's rows on every process
            micros += [part[:0]] * (max(math.ceil(n / cfg.micro_batch) for n in sizes) - len(micros))
            for k, micro in enumerate(micros):
                # world·rows/all rows: the engine averages over processes, so the step is the mean over
                # every process's rows (one process: rows / the part's rows)
                info = self.policy_backward(transitions, plan, cond, adv, micro, dance_rows,
                                            world * len(micro) / sum(sizes), stand_in=stand_in,
                                            last=k == len(micros) - 1, off_policy=off_policy,
                                            proximal=None if index == 0 else proximal)
                if info is None:
                    continue
                first = first or info
                ratios += info["importance_ratios"]
                clip_fractions.append(info["clip_fraction"])
                kls.append(info["kl"])
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm))
            norms.append(norm)
            if not math.isfinite(norm):
                self.nan_updates += 1
                self.optimizer.zero_grad(set_to_none=True)
                warnings.warn(f"iteration {iteration}: non-finite gradient norm, update skipped "
                              f"({self.nan_updates} in a row).")
                if self.nan_updates >= cfg.max_nan_updates:
                    raise TrainingStopped(f"{self.nan_updates} consecutive non-finite gradient norms (max_nan_updates="
                                          f"{cfg.max_nan_updates}): lower the learning rate or check the reward for "
                                          "NaN/inf.")
                continue
            self.nan_updates = 0
            self.optimizer.step()
        self.model.transformer.eval()
        stats = update_stats(first, clip_fractions, kls, norms)
        if ratios:
            ratio = torch.cat(ratios).float()
            stats |= {"importance_ratio_mean": float(ratio.mean()), "importance_ratio_max": float(ratio.max())}
        return stats

    def update_pending(self) -> dict:
        """One-step-off: the update on the batch the previous iteration rolled out (:mod:`trainer.one_step_off`).

        The batch leaves :attr:`pending` before any weight changes, so a run stopped later in this
        iteration never trains on it twice. The first iteration has no batch to train on.
        """
        batch, self.pending = self.pending, None
        if batch is None:
            return update_stats(None, [], [], []) | {"updated_batch": 0}
        plan, rows = self.plan(batch.left), self.processes.my_samples(len(batch.advantages))
        cond = {k: v[rows.start:rows.stop]
                for k, v in repeat_batch(self.conditioning(batch.prompt_ids), self.cfg.group_size).items()}
        with phase("update", self.model.device):
            stats = self.update(batch.transitions, plan, cond, batch.advantages, batch.iteration, rows,
                                off_policy=True)
        return stats | {"updated_batch": batch.iteration + 1}


def update_stats(first: dict | None, clip_fractions: list[float], kls: list[float], norms: list[float]) -> dict:
    """The update's columns of the metrics row (no optimizer step: zeros)."""
    return {"first_max_abs_log_ratio": (first or {}).get("max_abs_log_ratio", 0.0),
            "clip_fraction": sum(clip_fractions) / max(1, len(clip_fractions)),
            "kl": sum(kls) / max(1, len(kls)), "grad_norm": max(norms) if norms else 0.0,
            "updates": len(norms)}


def part_size(count: int, parts: int, index: int) -> int:
    """Rows in part ``index`` when ``count`` rows are split into ``parts`` as ``Tensor.tensor_split`` does."""
    return count // parts + (index < count % parts)

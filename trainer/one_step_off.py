"""One-step-off updates: iteration k trains on iteration k − 1's batch while its own batch is scored.

With ``--pipeline one-step-off`` an iteration rolls out its batch, hands it to the scorer, and
meanwhile updates the policy on the batch before it, whose advantages are known; the new batch
waits (:class:`PendingBatch`) for the next iteration. The scoring of a batch is then wholly off the
critical path (beside the update, on a worker thread, a CUDA stream or a judge's server), at the
price of training on samples one policy step old:

- the first iteration makes no update, and the last batch waits in the run's last checkpoint (a
  resumed, longer run trains on it): a run of N iterations makes N − 1 updates;
- the batch was rolled out by the behaviour policy π_b, the weights before the previous update.

The correction is decoupled PPO with a truncated importance weight. The PPO ratio and its clip are
taken against π_prox, the weights at the start of the update, so ε keeps its meaning, and each term
is weighted by how much more likely π_prox made the sample than π_b:

    w_i = min(π_prox / π_b, C) = min(exp(log π_prox − log π_b), C)    (detached; C = importance_cap)
    L_t = mean_i w_i · max(−A_i·r_i, −A_i·clip(r_i, 1 ± ε)),    r_i = π_θ / π_prox

The rows of the first optimizer step read ``log π_prox`` off their own forward (the weights have not
moved yet: r = 1 exactly); the rows of the later steps get it from one forward without gradient
before the first step (:func:`proximal_log_probs`), so the extra cost is ``(K − 1) / K`` of a
gradient-free pass over the batch, K = ``updates_per_iter``.

The metrics row logs ``updated_batch`` (the iteration that rolled out the trained batch) and the mean
and largest untruncated ``π_prox / π_b`` of the rows this process trained.

The pending batch is part of the run's state: every checkpoint holds it whole (every process's rows,
gathered in rank order), so a resumed run trains on the same batch and repeats the run exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mixgrpo.algorithm.rollout import Transition, select_rows

from .loss import policy_log_probs


@dataclass
class PendingBatch:
    """A rolled-out and scored batch waiting for its update."""

    iteration: int                  # the iteration that rolled it out: its seeds order the update
    left: int                       # its window's left step
    prompt_ids: list[int]
    advantages: Tensor              # every sample's, all processes, [G·N] (NaN: failed)
    transitions: list[Transition]   # this process's rows

    def state(self) -> dict:
        """The JSON part of a checkpoint's record (the tensors are :meth:`tensors`)."""
        return {"iteration": self.iteration, "left": self.left, "prompt_ids": list(self.prompt_ids),
                "steps": [[t.step, t.sigma, t.sigma_next] for t in self.transitions]}

    def tensors(self, gather) -> dict[str, Tensor]:
        """Every process's rows in rank order (``gather``: every process calls it), whole, on the CPU, each
        in its own memory (a step's ``x_next`` is the next step's ``x``; safetensors stores no shared views)."""
        out = {"advantages": self.advantages.cpu()}
        for i, t in enumerate(self.transitions):
            for field in ("x", "x_next", "log_prob"):
                out[f"{i}.{field}"] = gather(getattr(t, field)).to("cpu", copy=True)
        return out

    @classmethod
    def restore(cls, state: dict, tensors: dict[str, Tensor], rows: range, device) -> "PendingBatch":
        """The batch a checkpoint recorded, with this process's ``rows`` on ``device``."""
        transitions = [Transition(int(step), float(sigma), float(sigma_next),
                                  *(tensors[f"{i}.{field}"][rows.start:rows.stop].to(device)
                                    for field in ("x", "x_next", "log_prob")))
                       for i, (step, sigma, sigma_next) in enumerate(state["steps"])]
        return cls(int(state["iteration"]), int(state["left"]), [int(p) for p in state["prompt_ids"]],
                   tensors["advantages"].float(), transitions)


def check_pending_tensors(state: dict, tensors: dict[str, Tensor]) -> str | None:
    """What is wrong with a checkpoint's pending batch (None: it is whole)."""
    wanted = ["advantages"] + [f"{i}.{f}" for i in range(len(state.get("steps", []))) for f in ("x", "x_next", "log_prob")]
    missing = [key for key in wanted if key not in tensors]
    if missing:
        return f"lacks {len(missing)} tensor(s) of the pending batch, e.g. {missing[0]}"
    samples = len(tensors["advantages"])
    short = [key for key in wanted if len(tensors[key]) != samples]
    return f"{short[0]} holds {len(tensors[short[0]])} rows, the batch has {samples}" if short else None


def proximal_log_probs(velocity, transitions: list[Transition], rows: Tensor, cond: dict[str, Tensor], plan,
                       micro_batch: int, most_rows: int) -> list[Tensor]:
    """``log π_prox`` of ``rows`` of every transition (no gradient), each as a tensor over all of the
    transition's rows, NaN where not computed.

    It runs ``ceil(most_rows / micro_batch)`` passes per transition, ``most_rows`` being the most rows
    any process computes, so every process makes the same passes (a sharded model's forward is a
    collective); a pass with no row of its own runs on row 0 and is dropped.
    """
    chunks = rows.tensor_split(math.ceil(most_rows / micro_batch)) if most_rows else []
    out = []
    for t in transitions:
        log_prob = torch.full_like(t.log_prob, math.nan)
        for chunk in chunks:
            picked = chunk if len(chunk) else rows.new_zeros(1)
            values = policy_log_probs(velocity, select_rows(t, picked), {k: v[picked] for k, v in cond.items()}, plan)
            if len(chunk):
                log_prob[chunk] = values
        out.append(log_prob)
    return out

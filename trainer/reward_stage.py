"""The scorer stage: decode a rollout's samples and score them, inline or beside the rollout.

The rollout hands its samples over one prompt group at a time (:meth:`ScoringStage.submit`); the
advantages need every group's scores (:meth:`ScoringStage.collect`). Two modes:

- ``sequential``: the groups are decoded and scored after the rollout, on the calling thread;
- ``overlapped``: each group is decoded as soon as it is rolled out, and one worker thread scores
  the groups in the order they arrive while the rollout goes on with the next group, so only the
  last group's scoring stays on the critical path. On a GPU the worker runs on its own CUDA stream,
  which waits for the kernels that made the images.

- ``auto`` (the default): overlapped where that pays (:func:`resolve_mode`), else sequential.

Both modes score the same samples with the same policy (on-policy), so the run is the same either
way to float rounding: the overlapped rollout batches one prompt group at a time
(tests/trainer/test_reward_stage.py). Overlapping pays wherever scoring waits or runs
beside the transformer: an HTTP judge, a reward model on a GPU, a CPU reward beside a GPU rollout.
The stage keeps its own clock: ``busy_s`` is the time its jobs took, wherever they ran.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from mixgrpo.rewards import RewardSet
from mixgrpo.rewards.reward_set import RewardScores

from .phases import phase

MODES = ("auto", "overlapped", "sequential")


def resolve_mode(mode: str, device: torch.device, rewards: RewardSet) -> str:
    """``mode``, with ``auto`` made concrete: overlapped where the scorer does not take the rollout's processor.

    That is a rollout on a GPU (the scorer decodes on its own stream; CPU and HTTP rewards leave the GPU
    alone), or rewards that all wait on the network. A CPU rollout beside a CPU reward and the VAE
    share the same cores, and overlapping them was slower (benchmarks/results/stages.md).
    """
    if mode not in MODES:
        raise ValueError(f"reward_stage must be one of {', '.join(MODES)}; got {mode!r}")
    if mode != "auto":
        return mode
    waiting = all(reward.device_needs == "network" for reward, _ in rewards)
    return "overlapped" if device.type == "cuda" or waiting else "sequential"


class ScoringStage:
    """Decode-and-score jobs for one iteration's rollout, in the order they are submitted.

    :attr:`groups_per_job`: prompt groups the rollout should hand over at once (overlapped: one, so
    the scorer starts early; sequential: every group, one batched rollout as fast as it runs).
    """

    def __init__(self, model, rewards: RewardSet, mode: str = "auto"):
        mode = resolve_mode(mode, model.device, rewards)
        self.model, self.rewards, self.mode = model, rewards, mode
        self.groups_per_job = 1 if mode == "overlapped" else None
        self.jobs: list[Future | tuple] = []  # the worker's futures, or (samples, prompts) to decode and score here
        self.decode_s = 0.0  # on the rollout's thread
        self.score_s = 0.0   # on the worker (or the rollout's thread when sequential)
        on_gpu = model.device.type == "cuda"
        # beside a CPU rollout the worker computes on one thread: a second team of intra-op threads would spin on
        # the rollout's cores between its operations (torch.set_num_threads holds for the calling thread only)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixgrpo-scorer",
                                         initializer=None if on_gpu else torch.set_num_threads, initargs=(1,)) \
            if mode == "overlapped" else None
        self.stream = torch.cuda.Stream(model.device) if on_gpu and self.worker is not None else None

    def submit(self, samples: torch.Tensor, prompts: list[str]) -> None:
        """Decode and score ``samples`` (one prompt group's, or several) against ``prompts``.

        Overlapped, the samples are decoded here, on the rollout's thread and device queue, and only
        the scoring goes to the worker: the VAE is the model's work, and on a CPU a second thread of
        convolutions beside the rollout's oversubscribes the cores.
        """
        if self.worker is None:  # decoded and scored in :meth:`collect`, after the rollout
            self.jobs.append((samples, list(prompts)))
            return
        images = self._timed_decode(samples)
        ready = None
        if self.stream is not None:  # the worker's stream waits for the kernels that made the images
            ready = torch.cuda.Event()
            ready.record()
            images.record_stream(self.stream)
        self.jobs.append(self.worker.submit(self._score, images, list(prompts), ready))

    def _timed_decode(self, samples: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        with torch.no_grad(), phase("decode", self.model.device):
            images = self.model.decode(samples)
        self.decode_s += time.perf_counter() - started
        return images

    def _score(self, images: torch.Tensor, prompts: list[str], ready) -> RewardScores:
        started = time.perf_counter()
        with torch.no_grad(), (torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()):
            if ready is not None:
                self.stream.wait_event(ready)
            with phase("reward", self.model.device):
                scores = self.rewards.score(images, prompts)
            scores.raw = {name: value.cpu() for name, value in scores.raw.items()}  # synchronises the stream
        self.score_s += time.perf_counter() - started
        return scores

    def collect(self) -> RewardScores:
        """Every job's scores joined in submission order (waits for the worker; its errors are raised here)."""
        return RewardScores.join([self._score(self._timed_decode(job[0]), job[1], None) if isinstance(job, tuple)
                                  else job.result() for job in self.jobs])

    @property
    def busy_s(self) -> float:
        """The stage's own clock: decoding and scoring, wherever they ran (each counter has one writer thread)."""
        return self.decode_s + self.score_s

    def close(self) -> None:
        """Drop jobs not started and wait for the one running (an iteration abandoned mid-rollout)."""
        if self.worker is not None:
            self.worker.shutdown(wait=True, cancel_futures=True)


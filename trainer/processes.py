"""The processes of one run and the engine that keeps them in step: PyTorch DDP or FSDP2, launched by ``accelerate``.

``accelerate launch`` starts the processes (gloo on CPU, NCCL on GPUs); a plain ``python -m
trainer.run`` is one process, and nothing is wrapped unless ``--sharding fsdp`` asks for FSDP2: then
the one process builds a one-process group and shards for real, so FSDP2's mixed-precision policy,
CPU offload and sharded checkpoints run on a single GPU. With several processes the transformer goes
to the engine (:meth:`Processes.prepare`):

- **DDP** (``--sharding ddp``, the default): every process holds the whole model;
  ``DistributedDataParallel`` averages gradients in buckets, overlapped with the backward pass.
- **FSDP2** (``--sharding fsdp``, or a launch with an accelerate FSDP config): ``fully_shard`` on
  every transformer block, then the root; each process holds ``1/world`` of every weight, gradient
  and optimizer state, and reduce-scatters gradients.

Within one optimizer step only the last backward pass synchronises (:meth:`Processes.gradient_sync`).
Rewards are gathered with accelerate's ``gather``. A peer that dies turns the next collective into
:class:`ProcessLost`.
"""

from __future__ import annotations

import contextlib
import os
import re

import torch

from mixgrpo.cli import one_line
from mixgrpo.errors import MixGRPOError

#: what a collective says when the process at the other end is gone (gloo, NCCL, the TCP store)
PEER_LOST = re.compile(r"closed by peer|reset by peer|broken pipe|connection refused|NCCL|timed? ?out|"
                       r"ProcessGroup|Socket|TCPStore|\bstore\b", flags=re.IGNORECASE)


def peak_host_memory_mb() -> float:
    """This process's peak resident memory so far (Linux reports kilobytes, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def split_problem(samples: int, world: int, updates: int) -> str | None:
    """Why ``samples`` per iteration cannot be split into ``world`` processes × ``updates`` updates, or None."""
    if samples % (world * updates) == 0:
        return None
    return (f"{samples} samples per iteration do not split into {world} processes × {updates} updates; change "
            "group_size, prompts_per_iter or updates_per_iter.")


def held(module) -> tuple[int, int]:
    """How many of ``module``'s weights this process holds (its shards under FSDP2), and how many there are."""
    params = list(module.parameters())
    return (sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in params),
            sum(p.numel() for p in params))


def group_backend(cuda: bool, offload: bool) -> str:
    """The process group's backend: gloo without CUDA; NCCL on GPUs, with gloo beside it for CPU tensors when
    FSDP2 offloads its shards (clipping their gradients' norm, gathering them for a checkpoint)."""
    if not cuda:
        return "gloo"
    return "cuda:nccl,cpu:gloo" if offload else "nccl"


def peer_lost(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process stopped, not this process's own error."""
    import torch.distributed as dist

    if isinstance(error, torch.OutOfMemoryError):
        return False
    return isinstance(error, getattr(dist, "DistError", ())) or bool(PEER_LOST.search(str(error)))


def own_error(error: MixGRPOError, rank: int, world: int) -> MixGRPOError:
    """``error`` with ``process R of N:`` in front of its message (once): a process's own error says whose it is."""
    if world > 1 and not str(error).startswith("process "):
        error.args = (f"process {rank} of {world}: {error}", *error.args[1:])
    return error


class ProcessLost(MixGRPOError, RuntimeError):
    """Another process of a multi-process run died; this one cannot go on alone."""


class Processes:
    """This process's rank among ``world``, and the engine its transformer runs under.

    Samples ``0..G·N−1`` are split into equal contiguous slices, one per process, so a group may
    span processes; rewards are gathered so advantages always see whole groups.
    """

    def __init__(self, sharding: str = "ddp", offload: bool = False, mixed_precision: str = "no",
                 timeout_s: float | None = None):
        import datetime

        from accelerate import PartialState

        timeout = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
        if offload and torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            self._open_group(group_backend(cuda=True, offload=True), timeout)
        # without CUDA, a multi-process launch must ask for CPU (gloo) explicitly, or each process runs alone
        state = PartialState(cpu=not torch.cuda.is_available(), **timeout)
        self.state = state
        self.rank, self.world, self.device = state.process_index, state.num_processes, state.device
        self.is_main = state.is_main_process
        # one process: DDP would wrap nothing, FSDP2 still shards (its CUDA path on one GPU)
        self.sharding = sharding if self.world > 1 or sharding in ("fsdp", "hsdp") else "none"
        if self.sharding in ("fsdp", "hsdp") and self.world == 1:
            self._one_process_group()
        self.offload, self.mixed_precision = offload, mixed_precision
        self.ddp = None      # the DistributedDataParallel wrapper, under DDP
        self.sharded = None  # the fully_shard-ed transformer, under FSDP2
        self.sync_every_pass = False

    def check_split(self, samples: int, updates: int) -> None:
        """Each process takes ``samples / world`` samples, each split into ``updates`` parts: checked before
        anything loads, so a launch that cannot split fails in seconds."""
        from .config import ConfigError

        problem = split_problem(samples, self.world, updates)
        if problem:
            raise ConfigError(problem)

    def load_device(self, requested: str) -> str:
        """Where this process loads the model: its own GPU (``cuda:<local rank>``, set by the launch) when the
        run is on CUDA, else ``requested``."""
        from .config import ConfigError

        if not requested.startswith("cuda") or self.world == 1:
            return requested
        if ":" in requested:
            raise ConfigError(f"--device {requested} names one GPU for {self.world} processes; each process takes "
                              "its own (the launch's LOCAL_RANK): pass --device cuda.")
        return str(self.device)

    # -- the engine ------------------------------------------------------------------------
    def prepare(self, model, full_finetune: bool = False) -> None:
        """Hand ``model``'s transformer (LoRA already injected) to DDP or FSDP2; one process: nothing.

        A full fine-tune under FSDP2 reduce-scatters after every backward pass: accumulating
        unsharded gradients would hold the whole model's gradients on every process.
        """
        self.sync_every_pass = full_finetune
        if self.sharding == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            # buffers never change (no batch norm): no broadcast, so a forward pass needs no collective
            self.ddp = DistributedDataParallel(model.transformer, broadcast_buffers=False,
                                               device_ids=[self.device.index] if self.device.type == "cuda" else None)
            model.network = self.ddp
        elif self.sharding in ("fsdp", "hsdp"):
            self.sharded = self._shard(model)
        if self.world > 1:
            here, total = held(model.transformer)
            reference, kl = model.reference_network, ""
            if reference is not None:
                trained = any(p.requires_grad for p in reference.parameters())
                kl = "; {} of {} KL reference weights, {}".format(*held(reference), "trained" if trained else "frozen")
            print(f"process {self.rank} of {self.world} ({self.sharding}) holds {here} of {total} transformer "
                  f"weights on {model.device} (local rank {self.state.local_process_index}){kl}; peak host memory "
                  f"{peak_host_memory_mb():.0f} MB", flush=True)

    @staticmethod
    def _one_process_group() -> None:
        """A process group of this process alone (an in-memory store: no port, no launcher), which
        ``fully_shard`` needs; on CUDA with the CPU backend too, whether or not the shards are offloaded."""
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(group_backend(torch.cuda.is_available(), offload=True), store=dist.HashStore(),
                                    rank=0, world_size=1)

    @staticmethod
    def _open_group(backend: str, timeout: dict) -> None:
        """Join the launch's process group with ``backend`` before accelerate would open it NCCL-only (accelerate
        adds the CPU backend only under its own FSDP launch with offload, not for ``--fsdp-offload``). The GPU
        is this process's own (``LOCAL_RANK``)."""
        import torch.distributed as dist

        if not dist.is_initialized():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
            dist.init_process_group(backend, device_id=device, **timeout)

    def _shard(self, model):
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

        options = {"offload_policy": CPUOffloadPolicy() if self.offload else OffloadPolicy()}
        if self.sharding == "hsdp":
            options["mesh"] = self.hybrid_mesh()
        if self.mixed_precision != "no" and self.device.type == "cuda":
            dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
            options["mp_policy"] = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        modules = [model.transformer] + ([model.reference_network] if model.reference_network is not None else [])
        # the main process read the weights; the others hold the transformer on the meta device
        whole = [module.state_dict() if self.is_main else {} for module in modules]
        for module in modules:  # the frozen KL reference is sharded alike
            for block in model.shard_units(module):
                fully_shard(block, **options)
            fully_shard(module, **options)
        self.receive_weights(modules, whole)
        if self.offload:  # the shards rest in CPU memory; the transformer computes on this process's device
            model.compute_device = self.device
        return model.transformer

    @property
    def loads_on_main_only(self) -> bool:
        """Whether only the main process reads the transformer's weights (FSDP2 / HSDP with several processes)."""
        return self.sharding in ("fsdp", "hsdp") and self.world > 1

    def receive_weights(self, modules: list, whole: list[dict]) -> None:
        """Each process's shards of the main process's whole weights: the other processes allocate their shards
        (they were on the meta device) and every shard is filled from the main process's broadcast."""
        if not self.loads_on_main_only:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        for module, weights in zip(modules, whole):
            if not self.is_main:
                module.to_empty(device="cpu" if self.offload else self.device)
            with self.guard():
                set_model_state_dict(module, weights, options=StateDictOptions(full_state_dict=True,
                                                                               broadcast_from_rank0=True))

    def hybrid_mesh(self):
        """HSDP's 2-D mesh: ``(nodes, processes per node)``, named ``("replicate", "shard")``. Each weight is
        sharded over the processes of a node and replicated across nodes, so gathers stay inside a node and
        only the reduced gradients cross between nodes. Processes per node: the launch's ``LOCAL_WORLD_SIZE``."""
        import os

        from torch.distributed.device_mesh import init_device_mesh

        from .config import ConfigError

        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        if self.world % local:
            raise ConfigError(f"--sharding hsdp needs the same number of processes on every node; {self.world} "
                              f"processes do not split into nodes of {local}.")
        return init_device_mesh(self.device.type, (self.world // local, local), mesh_dim_names=("replicate", "shard"))

    def gradient_sync(self, enabled: bool):
        """A context for one backward pass: synchronise gradients only when ``enabled`` (the last of a step)."""
        if self.ddp is not None and not enabled:
            return self.ddp.no_sync()
        if self.sharded is not None:
            self.sharded.set_requires_gradient_sync(enabled or self.sync_every_pass)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def guard(self):
        """A collective's failure because a peer is gone (gloo: "Connection closed by peer"; NCCL: an
        aborted communicator) becomes :class:`ProcessLost`. This process's own errors stay its own: a
        project error (an out-of-memory in one phase, a stopped run) gets this process's rank in front
        of its message, and anything else (a bug) keeps its type and traceback."""
        if self.world == 1:
            yield
            return
        try:
            yield
        except ProcessLost:
            raise
        except MixGRPOError as error:
            raise own_error(error, self.rank, self.world)
        except RuntimeError as error:
            if not peer_lost(error):
                raise
            raise ProcessLost(f"process {self.rank} of {self.world}: another process of this run stopped "
                              f"({one_line(error)[:200]})") from None

    # -- collectives -----------------------------------------------------------------------
    def samples_of(self, rank: int, total: int) -> range:
        """The samples process ``rank`` rolls out and trains: its contiguous ``total / world`` slice."""
        per = total // self.world
        return range(rank * per, (rank + 1) * per)

    def my_samples(self, total: int) -> range:
        return self.samples_of(self.rank, total)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every process's ``local`` (same shape everywhere), concatenated in rank order."""
        if self.world == 1:
            return local
        from accelerate.utils import gather

        with self.guard():
            return gather(local.contiguous())

    def gather_objects(self, local) -> list:
        """Every process's ``local`` (any picklable object), in rank order; every process must call it."""
        if self.world == 1:
            return [local]
        from accelerate.utils import gather_object

        with self.guard():
            return gather_object([local])

    def max_int(self, value: int) -> int:
        """The largest ``value`` over all processes (every process must call it)."""
        if self.world == 1:
            return value
        return int(self.gather(torch.tensor([value], dtype=torch.int64, device=self.device)).max())

    def min_int(self, value: int) -> int:
        """The smallest ``value`` over all processes (every process must call it)."""
        return -self.max_int(-value)

    def close(self) -> None:
        """Leave the process group once every process is done with it (a group left to the interpreter's exit
        can abort the process as its threads are torn down)."""
        import torch.distributed as dist

        if dist.is_initialized():
            self.barrier()
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.world > 1:
            with self.guard():
                self.state.wait_for_everyone()

    # -- whole state for checkpoints and export ----------------------------------------------
    def gathered_weights(self, module, trainable_only: bool) -> dict[str, torch.Tensor] | None:
        """Under FSDP2, ``module``'s weights gathered whole to the main process's CPU (the others get ``{}``);
        every process must call it. Unsharded: None (the module holds them whole already)."""
        if self.sharded is None:
            return None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        with self.guard():
            return get_model_state_dict(module, options=StateDictOptions(
                full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only))


def open_processes(config) -> Processes:
    """This process among the launch's (a :class:`~trainer.config.TrainConfig`'s sharding, offload and
    precision), with the sample split checked: before any model loads."""
    from .launch import resolve_sharding

    processes = Processes(*resolve_sharding(config.sharding, config.fsdp_offload), config.mixed_precision,
                          config.collective_timeout)
    processes.check_split(config.group_size * config.prompts_per_iter, config.updates_per_iter)
    return processes

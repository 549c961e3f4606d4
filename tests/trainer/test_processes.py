"""Which errors of a multi-process run are a lost peer and which are this process's own (trainer/processes.py)."""

import pytest
import torch

from mixgrpo.errors import TrainingStopped
from trainer.phases import GPUOutOfMemory, phase
from trainer.processes import ProcessLost, Processes, peer_lost

pytestmark = pytest.mark.trainer


def test_collective_failures_are_a_lost_peer_and_nothing_else_is():
    assert peer_lost(RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242"))
    assert peer_lost(RuntimeError("NCCL communicator was aborted on rank 0"))
    assert not peer_lost(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not peer_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x4)"))
    assert not peer_lost(RuntimeError("could not restore the optimizer state"))


def second_of_two() -> Processes:
    """This (single) process's real Processes, seen as the second of two: guard reads only rank and world."""
    processes = Processes()
    processes.rank, processes.world = 1, 2
    return processes


def test_guard_keeps_this_process_errors_its_own_with_its_rank():
    processes = second_of_two()
    with pytest.raises(ProcessLost, match=r"^process 1 of 2: another process of this run stopped \(Connection"):
        with processes.guard():
            raise RuntimeError("Connection closed by peer [127.0.0.1]:4242")
    with pytest.raises(GPUOutOfMemory, match=r"^process 1 of 2: the GPU ran out of memory during the update"):
        with processes.guard(), phase("update"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(TrainingStopped, match=r"^process 1 of 2: every sample's reward failed"):
        with processes.guard():
            raise TrainingStopped("every sample's reward failed in 3 consecutive iterations")
    with pytest.raises(RuntimeError, match=r"^mat1 and mat2 shapes"):  # a bug keeps its type and message
        with processes.guard():
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


def test_each_process_loads_to_its_own_gpu():
    processes = second_of_two()
    processes.device = torch.device("cuda", 1)  # what the launch's LOCAL_RANK=1 gives PartialState
    assert processes.load_device("cuda") == "cuda:1"
    assert processes.load_device("cpu") == "cpu"
    with pytest.raises(Exception, match="names one GPU for 2 processes"):
        processes.load_device("cuda:0")


def test_offloaded_shards_get_a_cpu_backend_beside_nccl():
    from trainer.processes import group_backend

    assert group_backend(cuda=False, offload=False) == "gloo" and group_backend(cuda=False, offload=True) == "gloo"
    assert group_backend(cuda=True, offload=False) == "nccl"
    assert group_backend(cuda=True, offload=True) == "cuda:nccl,cpu:gloo"  # clip_grad_norm_ over CPU shards

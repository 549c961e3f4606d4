"""CPU threads: no more than the CPU time this process may really use.

PyTorch starts one intra-op thread per core it sees. In a container held to a CPU quota (cgroup v2
``cpu.max``, e.g. ``docker run --cpus 2``) it still sees every core of the host, and a dozen
threads then share two cores' time slices, which makes a CPU run several times slower. The
quota ``q`` per period ``p`` allows ``⌈q / p⌉`` cores' worth of threads.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpu_quota(cpu_max: Path = CPU_MAX) -> int | None:
    """``⌈quota / period⌉`` from ``cpu.max``; None without a quota (``max``) or without the file."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def fit_threads_to_cpu_quota(cpu_max: Path = CPU_MAX) -> int:
    """Lower torch's intra-op threads to the CPU quota when that is smaller; returns the threads in use."""
    quota = cpu_quota(cpu_max)
    if quota is not None and torch.get_num_threads() > quota:
        torch.set_num_threads(quota)
    return torch.get_num_threads()

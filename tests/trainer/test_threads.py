"""A CPU quota smaller than the cores torch sees lowers its threads; no quota leaves them."""

import pytest
import torch

from trainer.threads import cpu_quota, fit_threads_to_cpu_quota

pytestmark = pytest.mark.core


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_quota_of_one_and_a_half_cores_allows_two_threads(tmp_path, threads):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cpu_quota(cpu_max) == 2
    torch.set_num_threads(6)  # what torch picks on a host with 6 visible cores
    assert fit_threads_to_cpu_quota(cpu_max) == 2 == torch.get_num_threads()


def test_no_quota_or_no_file_leaves_the_threads(tmp_path, threads):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    torch.set_num_threads(3)
    assert cpu_quota(cpu_max) is None and fit_threads_to_cpu_quota(cpu_max) == 3
    assert cpu_quota(tmp_path / "missing") is None
    cpu_max.write_text("400000 100000\n")  # a quota above the threads: nothing to lower
    assert fit_threads_to_cpu_quota(cpu_max) == 3

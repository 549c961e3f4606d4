"""The one-GPU options on the CPU: --compile (regional), --sharding fsdp on one process, and GPU errors as one line.

tests/gpu runs the same options on CUDA; here each is a real ``trainer.run`` on the embedded model.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_metrics, small_run
from mixgrpo.cli import run_command
from trainer.phases import GPUError, GPUOutOfMemory, phase
from trainer.run import main

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]


def test_compiled_blocks_train_as_the_eager_ones_within_rounding(tmp_path):
    flags = small_run(tmp_path, iterations=2)
    main(flags + ["--name", "eager"])
    main(flags + ["--name", "compiled", "--compile"])
    eager, compiled = run_metrics(tmp_path / "runs" / "eager"), run_metrics(tmp_path / "runs" / "compiled")
    raw = [json.loads(line) for line in (tmp_path / "runs" / "compiled" / "metrics.jsonl").read_text().splitlines()]
    assert raw[0]["compile_s"] > 1.0  # the first iteration traces and compiles the blocks
    assert raw[1]["compile_s"] < raw[0]["compile_s"]
    assert all(0 <= r["compile_s"] < r["seconds"] for r in raw)  # the evaluation's own compiling is not counted
    for a, b in zip(eager, compiled):
        assert b["first_max_abs_log_ratio"] < 1e-5  # the on-policy bar holds compiled
        assert a["window_start"] == b["window_start"] and a["network_evals"] == b["network_evals"]
        # measured on this CPU: rewards equal, gradient norms to 2.6e-7 relative
        assert b["reward_mean"] == pytest.approx(a["reward_mean"], abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)


def test_compile_where_it_cannot_work_is_one_line_unless_the_fallback_is_asked_for(tmp_path):
    python_only = {**os.environ, "PATH": str(Path(sys.executable).parent), "CXX": "no-such-compiler",
                   "HF_HUB_OFFLINE": "1"}
    flags = small_run(tmp_path, iterations=1) + ["--compile"]
    done = subprocess.run([sys.executable, "-m", "trainer.run", *flags, "--name", "refused"], cwd=REPO,
                          env=python_only, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --compile: torch.compile on a CPU needs a C++ "
                                                           "compiler (no-such-compiler not found")
    assert not (tmp_path / "runs" / "refused").exists()  # a failed start leaves nothing
    done = subprocess.run([sys.executable, "-m", "trainer.run", *flags, "--compile-fallback", "--name", "fallback"],
                          cwd=REPO, env=python_only, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "training uncompiled (--compile-fallback)" in done.stderr
    assert run_metrics(tmp_path / "runs" / "fallback")[0]["iteration"] == 1


def test_fsdp_on_one_process_shards_for_real_and_resumes(tmp_path):
    flags = small_run(tmp_path, iterations=2, checkpoint_every=1)
    main(flags + ["--name", "plain"])
    main(flags + ["--name", "fsdp", "--sharding", "fsdp"])
    main(flags + ["--name", "fsdp-compiled", "--sharding", "fsdp", "--compile"])  # blocks compiled, then sharded
    runs = tmp_path / "runs"
    plain, fsdp = run_metrics(runs / "plain"), run_metrics(runs / "fsdp")
    assert [(r["world_size"], r["sharding"]) for r in fsdp] == [(1, "fsdp"), (1, "fsdp")]
    assert [r["sharding"] for r in plain] == ["none", "none"]
    for a, b in zip(plain, fsdp):  # measured on this CPU: equal
        assert b["reward_mean"] == pytest.approx(a["reward_mean"], abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-6)
    for a, b in zip(plain, run_metrics(runs / "fsdp-compiled")):  # measured: as compiled without FSDP2
        assert b["reward_mean"] == pytest.approx(a["reward_mean"], abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
        assert b["first_max_abs_log_ratio"] < 1e-5
    shards = runs / "fsdp" / "checkpoints" / "iter-000001" / "shards"
    assert {p.name for p in shards.iterdir()} >= {".metadata", "__0_0.distcp"}  # a sharded checkpoint
    shutil.copytree(runs / "fsdp", runs / "resumed")
    shutil.rmtree(runs / "resumed" / "checkpoints" / "iter-000002")
    shutil.rmtree(runs / "resumed" / "lora")
    main(["--resume", str(runs / "resumed")])
    assert [r["sharding"] for r in run_metrics(runs / "resumed")] == ["fsdp", "fsdp"]
    from safetensors.torch import load_file

    a = load_file(str(runs / "fsdp" / "lora" / "pytorch_lora_weights.safetensors"))
    b = load_file(str(runs / "resumed" / "lora" / "pytorch_lora_weights.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_a_gpu_out_of_memory_names_its_phase_and_the_options_that_lower_it(capsys):
    def out_of_memory(argv):
        with phase("update", "cuda:0"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                                         "capacity of 79.1 GiB of which 1.2 GiB is free.\nmore lines")

    assert run_command(out_of_memory, []) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line
    assert line.startswith("error: the GPU ran out of memory during the update on cuda:0 (CUDA out of memory. "
                           "Tried to allocate 2.00 GiB)")
    assert "--micro-batch" in line and "--checkpointing full" in line and "--debug" in line
    with pytest.raises(GPUOutOfMemory), phase("rollout"):
        raise torch.OutOfMemoryError("CUDA out of memory.")


@pytest.mark.skipif(not hasattr(torch, "AcceleratorError"), reason="torch.AcceleratorError needs torch ≥ 2.8")
def test_a_cuda_error_names_its_phase_and_how_to_find_the_kernel():
    error = torch.AcceleratorError.__new__(torch.AcceleratorError)
    error.args = ("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be ...",)
    with pytest.raises(GPUError, match="CUDA error during the evaluation: CUDA error: an illegal memory access "
                                       "was encountered. Rerun with CUDA_LAUNCH_BLOCKING=1"):
        with phase("evaluation"):
            raise error
    with pytest.raises(ValueError):  # anything else passes through untouched
        with phase("evaluation"):
            raise ValueError("not a GPU error")

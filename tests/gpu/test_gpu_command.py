"""The GPU tier: ``python -m trainer.run`` as a user runs it, on a CUDA GPU.

Skipped, with the reason, where CUDA is absent (CI has no GPU); run on a GPU machine with
``python -m pytest tests/gpu``. Every run is a subprocess of the real command:

(a) the embedded default under bf16: it trains, evaluates and exports;
(b) a pipeline with FLUX.1-dev's block shapes and random weights, saved in diffusers layout as bf16
    safetensors, LoRA, two iterations, with ``--compile`` and without;
(c) FLUX's layout at a third of the width, ``--sharding fsdp --full-finetune`` on one process, with
    ``--fsdp-offload`` and without;
(d) the scorer stage on its own CUDA stream against the sequential order, and the one-step-off pipeline.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU tier needs a CUDA GPU; none here")]

ROOT = Path(__file__).resolve().parents[2]
ON_POLICY_BAR = 1e-5  # first update's max |log r|: the update recomputes the rollout's own policy


def trainer_run(*flags, timeout=900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "trainer.run", "--device", "cuda", "--mixed-precision", "bf16", *map(str, flags)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stderr[-4000:]}"
    return done


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def one_prompt(tmp_path) -> Path:
    path = tmp_path / "eval_prompt.txt"
    path.write_text("a red circle\n")
    return path


@pytest.fixture(scope="module")
def flux_dev_slice(tmp_path_factory):
    from benchmarks.gpu_flux import write_pipeline_folder

    return write_pipeline_folder("flux-dev-slice", tmp_path_factory.mktemp("flux_dev_slice"), device="cuda")


@pytest.fixture(scope="module")
def flux_small(tmp_path_factory):
    from benchmarks.gpu_flux import write_pipeline_folder

    return write_pipeline_folder("flux-small", tmp_path_factory.mktemp("flux_small"), device="cuda")


def test_embedded_default_trains_evaluates_and_exports(tmp_path):
    done = trainer_run("--run-dir", tmp_path, "--name", "default")
    run = tmp_path / "default"
    rows = metrics(run)
    assert len(rows) == 24 and rows[-1]["iteration"] == 24
    assert all(math.isfinite(r["reward_mean"]) and r["failed_samples"] == 0 for r in rows)
    assert all(r["first_max_abs_log_ratio"] < ON_POLICY_BAR for r in rows)
    assert all(0 < r["peak_memory_gib"] < 10 for r in rows)
    summary = json.loads((run / "eval.json").read_text())["summary"]
    assert math.isfinite(summary["before"]) and math.isfinite(summary["after"])
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert "held-out reward: before" in done.stdout


def test_full_finetune_under_fsdp2_on_one_gpu_with_and_without_offload(tmp_path, flux_small):
    common = ["--model", flux_small, "--resolution", 256, "--group-size", 4, "--prompts-per-iter", 1,
              "--updates-per-iter", 1, "--micro-batch", 4, "--full-finetune", "--sharding", "fsdp",
              "--learning-rate", 1e-6, "--iterations", 2, "--checkpoint-every", 1, "--eval-prompts",
              one_prompt(tmp_path), "--eval-seeds", 1, "--algo", "mixgrpo", "--run-dir", tmp_path]
    trainer_run(*common, "--name", "fsdp")
    trainer_run(*common, "--name", "offload", "--fsdp-offload")
    peaks = {}
    for name in ("fsdp", "offload"):
        run = tmp_path / name
        rows = metrics(run)
        assert [r["sharding"] for r in rows] == ["fsdp", "fsdp"] and rows[0]["world_size"] == 1
        assert all(r["first_max_abs_log_ratio"] < ON_POLICY_BAR and math.isfinite(r["grad_norm"]) for r in rows)
        assert any((run / "checkpoints").rglob("*.distcp")), "FSDP2 writes sharded checkpoints"
        assert (run / "transformer" / "config.json").is_file()
        peaks[name] = max(r["peak_memory_gib"] for r in rows)
    # offloaded, the fp32 weights, gradients and AdamW states rest in CPU memory between uses
    assert peaks["offload"] < 0.8 * peaks["fsdp"], peaks


def test_flux_dev_shaped_lora_with_and_without_compile(tmp_path, flux_dev_slice):
    common = ["--model", flux_dev_slice, "--resolution", 256, "--group-size", 4, "--prompts-per-iter", 1,
              "--updates-per-iter", 1, "--micro-batch", 4, "--lora-rank", 16, "--checkpointing", "full",
              "--iterations", 2, "--eval-prompts", one_prompt(tmp_path), "--eval-seeds", 1, "--algo", "mixgrpo",
              "--run-dir", tmp_path]
    trainer_run(*common, "--name", "plain")
    trainer_run(*common, "--name", "compiled", "--compile")
    plain, compiled = metrics(tmp_path / "plain"), metrics(tmp_path / "compiled")
    assert "compile_s" not in plain[0] and compiled[0]["compile_s"] > 0
    for a, b in zip(plain, compiled):
        assert a["first_max_abs_log_ratio"] < ON_POLICY_BAR and b["first_max_abs_log_ratio"] < ON_POLICY_BAR
        assert a["network_evals"] == b["network_evals"]
    # the same random draws: compiled kernels change the images only by bf16 rounding
    assert compiled[0]["reward_mean"] == pytest.approx(plain[0]["reward_mean"], abs=0.02)
    for run in ("plain", "compiled"):
        assert (tmp_path / run / "lora" / "pytorch_lora_weights.safetensors").is_file()


def test_scorer_on_its_own_stream_matches_the_sequential_order_and_one_step_off_trains(tmp_path):
    common = ["--iterations", 3, "--eval-prompts", one_prompt(tmp_path), "--eval-seeds", 1, "--run-dir", tmp_path]
    trainer_run(*common, "--name", "sequential", "--reward-stage", "sequential")
    trainer_run(*common, "--name", "overlapped", "--reward-stage", "overlapped")
    trainer_run(*common, "--name", "one_step_off", "--pipeline", "one-step-off")
    sequential, overlapped = metrics(tmp_path / "sequential"), metrics(tmp_path / "overlapped")
    for a, b in zip(sequential, overlapped):
        assert b["scorer_s"] > 0 and b["failed_samples"] == 0
        # the same samples scored: the images read on the scorer's stream are the finished ones (a read
        # that raced the rollout's kernels would score unfinished latents); per-group batches round apart
        assert b["reward_mean"] == pytest.approx(a["reward_mean"], abs=0.02)
        assert b["first_max_abs_log_ratio"] < ON_POLICY_BAR
    rows = metrics(tmp_path / "one_step_off")
    assert [r["updated_batch"] for r in rows] == [0, 1, 2] and rows[0]["updates"] == 0
    assert rows[1]["importance_ratio_max"] == pytest.approx(1.0, abs=1e-3)  # no step since batch 1 was drawn
    assert all(0.5 < r["importance_ratio_mean"] < 2.0 for r in rows[1:])
    assert (tmp_path / "one_step_off" / "lora" / "pytorch_lora_weights.safetensors").is_file()

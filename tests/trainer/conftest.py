"""Shared helpers of the trainer tests: small-run flags and run comparisons (the tiny FLUX folder: tests/conftest.py)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def small_run(tmp_path, **overrides) -> list[str]:
    """Flags of a seconds-long run on the embedded model."""
    flags = {"iterations": 3, "group-size": 4, "prompts-per-iter": 2, "steps": 8, "window": 2,
             "shift-interval": 2, "eval-seeds": 1, "eval-every": 0, "checkpoint-every": 3,
             "micro-batch": 8, "run-dir": str(tmp_path / "runs"), "name": "run"}
    flags.update({k.replace("_", "-"): v for k, v in overrides.items()})
    argv = []
    for key, value in flags.items():
        if value != "":
            argv += [f"--{key}", str(value)]
    return argv


TIMING = {"seconds", "rollout_s", "reward_s", "scorer_s", "update_s", "compile_s", "peak_memory_gib"}


def run_metrics(run) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` without their timings."""
    import json
    from pathlib import Path

    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def assert_same_run(straight, resumed, iterations: int) -> None:
    """A resumed run repeats the straight one: every metric row and the final LoRA.

    Every random draw derives from (seed, iteration) and a checkpoint restores weights, optimizer
    and schedules exactly; on one CPU the same arithmetic repeats bit for bit. 1e-6 leaves room for
    a BLAS that picks another summation order on another machine.
    """
    from pathlib import Path

    from safetensors.torch import load_file

    a, b = run_metrics(straight), run_metrics(resumed)
    assert [r["iteration"] for r in b] == list(range(1, iterations + 1))
    for ra, rb in zip(a, b):
        assert ra["window_start"] == rb["window_start"]
        assert ra["reward_mean"] == pytest.approx(rb["reward_mean"], abs=1e-6)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-4, abs=1e-7)
    wa = load_file(str(Path(straight) / "lora" / "pytorch_lora_weights.safetensors"))
    wb = load_file(str(Path(resumed) / "lora" / "pytorch_lora_weights.safetensors"))
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6
    assert any(v.abs().max() > 0 for k, v in wa.items() if "lora_B" in k)  # the LoRA did train

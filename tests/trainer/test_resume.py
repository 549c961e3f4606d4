"""A run killed with SIGKILL and resumed equals the same run uninterrupted."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import small_run
from trainer.run import main

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]
TIMING = {"seconds", "rollout_s", "reward_s", "update_s"}


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_sigkill_and_resume_matches_an_uninterrupted_run(tmp_path):
    flags = small_run(tmp_path, iterations=6, checkpoint_every=3)
    main(flags[:-2] + ["--name", "straight"])
    straight = tmp_path / "runs" / "straight"

    killed = tmp_path / "runs" / "killed"
    process = subprocess.Popen([sys.executable, "-m", "trainer.run", *flags[:-2], "--name", "killed"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "iter-000003").is_dir() and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "lora").exists()

    main(["--resume", str(killed)])
    # Every random draw derives from (seed, iteration) and the checkpoint restores weights, optimizer
    # and schedules exactly; on one CPU the same arithmetic repeats bit for bit. 1e-6 leaves room for
    # a BLAS that picks another summation order on another machine.
    a, b = _metrics(straight), _metrics(killed)
    assert [r["iteration"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        assert ra["window_start"] == rb["window_start"]
        assert ra["reward_mean"] == pytest.approx(rb["reward_mean"], abs=1e-6)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-4, abs=1e-7)
    wa = load_file(str(straight / "lora" / "pytorch_lora_weights.safetensors"))
    wb = load_file(str(killed / "lora" / "pytorch_lora_weights.safetensors"))
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6
    assert any(v.abs().max() > 0 for k, v in wa.items() if "lora_B" in k)  # the LoRA did train

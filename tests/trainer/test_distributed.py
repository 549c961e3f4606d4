"""``accelerate launch --num_processes 2 --cpu`` gives the same advantages and first update as one process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import small_run
from trainer.run import main

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]


def test_two_processes_split_a_group_and_match_one_process(tmp_path):
    # one prompt group of 4 samples: process 0 rolls out members 0–1, process 1 members 2–3
    flags = small_run(tmp_path, iterations=1, prompts_per_iter=1, group_size=4, updates_per_iter=1,
                      checkpoint_every=1)[:-2]
    main(flags + ["--name", "one"])
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "trainer.run", *flags, "--name", "two"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / "runs" / n / "metrics.jsonl").read_text().splitlines()[0]) for n in ("one", "two"))
    assert one["advantages"] == pytest.approx(two["advantages"], abs=1e-6)  # whole-group statistics
    assert one["reward_mean"] == pytest.approx(two["reward_mean"], abs=1e-6)
    assert two["network_evals"] == one["network_evals"]  # window at l = 0: no trunk to duplicate
    # Gradients are averaged across processes (a different summation order than one process):
    # after one AdamW step the LoRA weights agree to float32 rounding.
    wa = load_file(str(tmp_path / "runs" / "one" / "lora" / "pytorch_lora_weights.safetensors"))
    wb = load_file(str(tmp_path / "runs" / "two" / "lora" / "pytorch_lora_weights.safetensors"))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-5

"""A run killed with SIGKILL and resumed equals the same run uninterrupted."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_same_run, small_run
from trainer.run import main

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]
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
    assert_same_run(straight, killed, 6)

"""SIGINT and SIGTERM finish the iteration, write a checkpoint and exit 130 / 143; the resumed run equals the straight one."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import assert_same_run, run_metrics, small_run
from trainer.run import main

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def _flags(root: Path) -> list[str]:
    (root / "eval.txt").write_text("a red circle\na blue square\n")  # a short evaluation keeps the test quick
    return small_run(root, iterations=4, checkpoint_every=3, eval_prompts=root / "eval.txt")[:-2]


def _wait_for_rows(run: Path, rows: int, process, deadline_s: float = 300) -> None:
    deadline = time.time() + deadline_s
    while time.time() < deadline and process.poll() is None:
        file = run / "metrics.jsonl"
        if file.is_file() and len(file.read_text().splitlines()) >= rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run did not reach iteration {rows}")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("straight")
    main(_flags(root) + ["--name", "straight"])
    return root / "runs" / "straight"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_and_resume_equals_the_straight_run(tmp_path, straight, signum):
    run = tmp_path / "runs" / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "trainer.run", *_flags(tmp_path), "--name", "stopped"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_rows(run, 1, process)
    process.send_signal(signum)
    err = process.communicate(timeout=300)[1]
    assert process.returncode == 128 + signum, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("interrupted at iteration ")]
    assert len(said) == 1 and said[0].endswith(f"; resume with: python -m trainer.run --resume {run}"), err[-2000:]
    last = said[0]
    stopped_at = int(last.split()[3].rstrip(";"))
    assert 1 <= stopped_at < 4 and "Traceback" not in err
    checkpoint = run / "checkpoints" / f"iter-{stopped_at:06d}"
    assert json.loads((checkpoint / "state.json").read_text())["iteration"] == stopped_at
    assert len(run_metrics(run)) == stopped_at and not (run / "lora").exists()

    main(["--resume", str(run)])
    assert_same_run(straight, run, 4)


def test_a_grace_period_too_short_abandons_the_iteration_in_flight_and_checkpoints_its_start(tmp_path, straight):
    """``--stop-grace``: the signal lands in iteration 2's rollout; what is left of the grace cannot hold the
    rest of it, so it is dropped before its update and the checkpoint is iteration 1's; the resume repeats it."""
    run = tmp_path / "runs" / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "trainer.run", *_flags(tmp_path), "--name", "stopped",
                                "--stop-grace", "0.01"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    _wait_for_rows(run, 1, process)
    time.sleep(0.05)  # iteration 2 has begun its rollout (an iteration takes about a second here)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=300)[1]
    assert process.returncode == 143, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("interrupted at iteration ")]
    assert said == ["interrupted at iteration 1 (iteration 2 dropped before its update: --stop-grace); resume with: "
                    f"python -m trainer.run --resume {run}"], err[-2000:]
    assert json.loads((run / "checkpoints" / "iter-000001" / "state.json").read_text())["iteration"] == 1
    assert len(run_metrics(run)) == 1
    main(["--resume", str(run)])
    assert_same_run(straight, run, 4)


def test_a_signalled_launcher_leaves_a_checkpoint_the_run_resumes_from(tmp_path, straight):
    """SIGTERM to ``accelerate launch`` itself (as a scheduler pre-empting the job does): it forwards the
    signal to both workers, which agree on an iteration, checkpoint it and exit before its kill."""
    run = tmp_path / "runs" / "two"
    launcher = subprocess.Popen([*LAUNCH, "-m", "trainer.run", *_flags(tmp_path), "--name", "two"], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_rows(run, 1, launcher)
    launcher.send_signal(signal.SIGTERM)
    err = launcher.communicate(timeout=300)[1]
    assert launcher.returncode != 0
    said = [line for line in err.splitlines() if line.startswith("interrupted at iteration ")]
    assert len(said) == 1, err[-3000:]
    stopped_at = int(said[0].split()[3].rstrip(";"))
    assert json.loads((run / "checkpoints" / f"iter-{stopped_at:06d}" / "state.json").read_text())["iteration"] \
        == stopped_at
    main(["--resume", str(run)])  # on one process
    assert [r["world_size"] for r in run_metrics(run)] == [2] * stopped_at + [1] * (4 - stopped_at)


def test_a_second_signal_exits_at_once_and_a_forwarded_one_does_not():
    code = textwrap.dedent("""
        import os, signal, time
        from trainer.signals import StopRequest
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)  # what a launcher forwards right after the terminal's Ctrl-C
            time.sleep(0.1)
            print("first", stop.signum, flush=True)
            time.sleep(2.1)
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again
            time.sleep(5)
            print("not reached", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["first", str(int(signal.SIGINT))]
    assert done.returncode == 130 and "SIGINT again: exiting now, without a checkpoint" in done.stderr


def _rank_pid(launcher_pid: int, rank: int) -> int | None:
    """The pid of the worker of ``rank`` started by the launcher (read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"trainer.run" in cmdline and f"RANK={rank}".encode() in environ and int(entry.name) != launcher_pid:
            return int(entry.name)
    return None


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_iteration(tmp_path):
    run = tmp_path / "runs" / "two"
    launcher = subprocess.Popen([*LAUNCH, "-m", "trainer.run", *_flags(tmp_path), "--name", "two"], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_rows(run, 1, launcher)
    worker = _rank_pid(launcher.pid, 1)
    assert worker is not None, "no worker of rank 1: the launch did not start two processes"
    os.kill(worker, signal.SIGTERM)  # rank 0 never sees a signal: the ranks must agree
    err = launcher.communicate(timeout=300)[1]  # returns: no rank hangs
    assert launcher.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("interrupted at iteration ")]
    assert len(lines) == 1, err[-3000:]  # said once, by the main process
    stopped_at = int(lines[0].split()[3].rstrip(";"))
    rows = run_metrics(run)
    assert len(rows) == stopped_at and {r["world_size"] for r in rows} == {2}
    state = json.loads((run / "checkpoints" / f"iter-{stopped_at:06d}" / "state.json").read_text())
    assert state["iteration"] == stopped_at


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_a_killed_rank_stops_the_others_with_one_line_and_the_run_resumes(tmp_path, sharding):
    """Under FSDP2 the checkpoint is sharded (each process wrote its part) and resumes on one process."""
    run = tmp_path / "runs" / "two"
    launcher = subprocess.Popen([*LAUNCH, "-m", "trainer.run", *_flags(tmp_path), "--sharding", sharding,
                                 "--name", "two"], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_rows(run, 3, launcher)  # the checkpoint of iteration 3 is written with row 3
    while not (run / "checkpoints" / "iter-000003").is_dir() and launcher.poll() is None:
        time.sleep(0.02)
    os.kill(_rank_pid(launcher.pid, 1), signal.SIGKILL)  # out of memory, a lost node
    err = launcher.communicate(timeout=300)[1]  # the survivor does not hang in its collective
    assert launcher.returncode != 0
    said = [line for line in err.splitlines() if "error: process 0 of 2: another process of this run stopped" in line]
    assert len(said) == 1 and said[0].endswith(f"resume from iter-000003 with: python -m trainer.run --resume {run}")
    assert not [line for line in err.splitlines() if "Traceback" in line and "rank" in line]  # only the launcher's

    main(["--resume", str(run)])  # on one process: the checkpoint does not depend on the world size
    rows = run_metrics(run)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4] and [r["world_size"] for r in rows] == [2, 2, 2, 1]


def test_a_stalled_rank_stops_the_others_with_one_line_within_the_collective_timeout(tmp_path):
    """A process that stops answering without dying (a hung GPU or node: SIGSTOP here) holds the others in
    their next collective only until ``--collective-timeout``; then they stop with one line, as for a lost one."""
    run = tmp_path / "runs" / "two"
    launcher = subprocess.Popen([*LAUNCH, "-m", "trainer.run", *_flags(tmp_path), "--collective-timeout", "10",
                                 "--name", "two"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(run, 1, launcher)
        first, stalled = _rank_pid(launcher.pid, 0), _rank_pid(launcher.pid, 1)
        os.kill(stalled, signal.SIGSTOP)
        stopped_at = time.time()
        while Path(f"/proc/{first}").exists() and Path(f"/proc/{first}/status").read_text().find("zombie") < 0:
            assert time.time() - stopped_at < 120, "process 0 still waits for the stalled process"
            time.sleep(0.1)
        waited = time.time() - stopped_at
    finally:
        if stalled := _rank_pid(launcher.pid, 1):
            os.kill(stalled, signal.SIGKILL)
    err = launcher.communicate(timeout=120)[1]
    said = [line for line in err.splitlines() if "error: process 0 of 2: another process of this run stopped" in line]
    assert len(said) == 1 and "resume from the start" in said[0], err[-3000:]
    assert 10 <= waited < 60  # the timeout, and the few seconds of the iteration it fell in


OWN_OOM = '''
import os
import sys

import torch

from mixgrpo.cli import run_command
from mixgrpo.rewards.registry import register
from mixgrpo.rewards.shapes import ShapesWorldReward
from trainer.run import main


@register("shapes-oom-on-rank-1")
class OutOfMemoryOnRankOne(ShapesWorldReward):
    """The shapes reward, except that process 1 runs out of memory scoring (an injected fault)."""

    name = "shapes-oom-on-rank-1"

    def score(self, images, prompts):
        if os.environ["RANK"] == "1":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().score(images, prompts)


sys.exit(run_command(main))
'''


def test_a_rank_that_runs_out_of_memory_says_so_itself_with_its_rank(tmp_path):
    script = tmp_path / "own_oom.py"
    script.write_text(OWN_OOM)
    done = subprocess.run([*LAUNCH, str(script), *_flags(tmp_path), "--reward", "shapes-oom-on-rank-1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.returncode != 0
    # a progress bar may precede a line: the errors are found where they start
    errors = re.findall(r"error: (process \d of 2: [^;(]+)", done.stderr)
    assert "process 1 of 2: the GPU ran out of memory during the evaluation on cpu " in errors, done.stderr[-3000:]
    # the other process, if it noticed before the launcher stopped it, blames its peer, not itself
    assert set(errors) <= {"process 1 of 2: the GPU ran out of memory during the evaluation on cpu ",
                           "process 0 of 2: another process of this run stopped "}

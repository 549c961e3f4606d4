"""``--resume`` reads the newest checkpoint whole and falls back to the previous good one when it is damaged."""

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_same_run, small_run
from mixgrpo.cli import run_command
from trainer.checkpoint import CheckpointDamaged, read_latest_checkpoint, save_checkpoint
from trainer.run import main

pytestmark = pytest.mark.trainer


def _run_with_two_checkpoints(root: Path):
    """A tiny model's parameters and AdamW, checkpointed at iterations 1 and 2."""
    torch.manual_seed(0)
    params = {"a.weight": torch.nn.Parameter(torch.randn(4, 3)), "b.bias": torch.nn.Parameter(torch.randn(5))}
    optimizer = torch.optim.AdamW(params.values(), lr=1e-3)
    pending = {"iteration": 0, "left": 0, "prompt_ids": [3], "steps": [[0, 1.0, 0.9]]}  # one-step-off's batch
    rows = {"advantages": torch.randn(4), "0.x": torch.randn(4, 2), "0.x_next": torch.randn(4, 2),
            "0.log_prob": torch.randn(4)}
    for iteration in (1, 2):
        sum(p.square().sum() for p in params.values()).backward()
        optimizer.step()
        save_checkpoint(root, iteration, params, optimizer.state_dict(), {"iteration": iteration, "prompt_cursor": 2 * iteration,
                                                             "windows": {}, "history": [], "pending": pending},
                        pending=rows)
    return params, optimizer


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


DAMAGE = {
    "header cut": lambda c: _truncate(c / "weights.safetensors", 5),
    "tensor data cut": lambda c: _truncate(c / "weights.safetensors", os.path.getsize(c / "weights.safetensors") - 8),
    "weights deleted": lambda c: (c / "weights.safetensors").unlink(),
    "optimizer garbage": lambda c: (c / "optimizer.pt").write_bytes(b"\x00" * 64),
    "optimizer cut": lambda c: _truncate(c / "optimizer.pt", 100),
    "rng deleted": lambda c: (c / "rng.pt").unlink(),
    "state cut": lambda c: _truncate(c / "state.json", 10),
    "state without keys": lambda c: (c / "state.json").write_text("{}"),
    "pending batch deleted": lambda c: (c / "pending.safetensors").unlink(),
    "pending batch cut": lambda c: _truncate(c / "pending.safetensors", 40),
    "pending batch short of rows": lambda c: save_file({"advantages": torch.randn(4), "0.x": torch.randn(3, 2),
                                                        "0.x_next": torch.randn(4, 2), "0.log_prob": torch.randn(4)},
                                                       str(c / "pending.safetensors")),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_each_kind_of_damage_falls_back_with_a_warning_naming_the_folder(tmp_path, damage):
    params, optimizer = _run_with_two_checkpoints(tmp_path)
    newest = tmp_path / "checkpoints" / "iter-000002"
    DAMAGE[damage](newest)
    warnings = []
    content = read_latest_checkpoint(tmp_path, params, optimizer, warn=warnings.append)
    assert content["path"].name == "iter-000001" and content["state"]["prompt_cursor"] == 2
    assert content["state"]["pending"]["tensors"]["0.x"].shape == (4, 2)
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: checkpoint {newest} is damaged (")
    assert warnings[0].endswith("); trying the previous one.")


def test_a_missing_weight_is_damage(tmp_path):
    params, optimizer = _run_with_two_checkpoints(tmp_path)
    bigger = {**params, "c.weight": torch.nn.Parameter(torch.zeros(2))}
    with pytest.raises(CheckpointDamaged, match="no usable checkpoint") as raised:
        read_latest_checkpoint(tmp_path, bigger, torch.optim.AdamW(bigger.values()), warn=lambda _: None)
    assert "lacks 1 trained weight(s), e.g. c.weight" in str(raised.value)


def test_no_good_checkpoint_is_one_line(tmp_path, capsys):
    flags = small_run(tmp_path, iterations=1, checkpoint_every=1)
    (tmp_path / "eval.txt").write_text("a red circle\n")
    main(flags + ["--eval-prompts", str(tmp_path / "eval.txt")])
    run = tmp_path / "runs" / "run"
    _truncate(run / "checkpoints" / "iter-000001" / "weights.safetensors", 3)
    assert run_command(main, ["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: no usable checkpoint in {run / 'checkpoints'}: ")
    assert "weights.safetensors: unreadable" in err[-1] and "Traceback" not in "\n".join(err)


def test_resume_past_a_truncated_checkpoint_equals_the_straight_run(tmp_path, capsys):
    (tmp_path / "eval.txt").write_text("a red circle\na blue square\n")
    flags = small_run(tmp_path, iterations=4, checkpoint_every=2, eval_prompts=tmp_path / "eval.txt")[:-2]
    main(flags + ["--name", "straight"])
    main(flags + ["--name", "run"])
    run = tmp_path / "runs" / "run"
    _truncate(run / "checkpoints" / "iter-000004" / "weights.safetensors", 1000)
    (run / "lora").rename(tmp_path / "first-lora")
    capsys.readouterr()
    main(["--resume", str(run)])
    said = capsys.readouterr()
    assert f"warning: checkpoint {run / 'checkpoints' / 'iter-000004'} is damaged" in said.err
    assert f"resumed {run} at iteration 2 from iter-000002" in said.out
    assert_same_run(tmp_path / "runs" / "straight", run, 4)


AGREE = '''
import sys
from pathlib import Path

import torch

from trainer.checkpoint import read_latest_checkpoint
from trainer.processes import Processes

processes = Processes()
params = {"a.weight": torch.nn.Parameter(torch.zeros(4, 3)), "b.bias": torch.nn.Parameter(torch.zeros(5))}
optimizer = torch.optim.AdamW(params.values(), lr=1e-3)
said = []  # each process's own file: the two processes' printed lines could interleave
content = read_latest_checkpoint(Path(sys.argv[1 + processes.rank]), params, optimizer, gather=processes.gather_objects,
                                 warn=said.append)
said.append(f"process {processes.rank} of {processes.world} resumed {content['path'].name}")
Path(sys.argv[3], f"said-{processes.rank}.txt").write_text("\\n".join(said))
processes.close()
'''


def test_every_process_resumes_the_checkpoint_all_of_them_can_read(tmp_path):
    """Two real gloo processes, each reading its own copy of the run (two nodes without a shared file system):
    the main process's newest checkpoint has not reached the other's copy, which has one the main lacks."""
    import subprocess

    from test_distributed import LAUNCH, REPO

    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    _run_with_two_checkpoints(node0)
    _run_with_two_checkpoints(node1)
    (tmp_path / "agree.py").write_text(AGREE)
    os.replace(node1 / "checkpoints" / "iter-000002", node1 / "checkpoints" / "iter-000003")  # only node 1 has it
    launch = LAUNCH[:LAUNCH.index("-m", 2)] + [str(tmp_path / "agree.py"), str(node0), str(node1),
                                             str(tmp_path)]
    done = subprocess.run(launch, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    missing = node1 / "checkpoints" / "iter-000002" / "weights.safetensors"
    for rank, node in enumerate((node0, node1)):
        assert (tmp_path / f"said-{rank}.txt").read_text().splitlines() == [
            f"warning: checkpoint {node / 'checkpoints' / 'iter-000002'} is damaged (on process 1: {missing}: missing); "
            "trying the previous one.", f"process {rank} of 2 resumed iter-000001"]

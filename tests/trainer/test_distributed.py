"""Real launches of 2 processes on gloo (``accelerate launch --multi_gpu``): DDP and FSDP2 equal one process.

Every run records from inside the world size it saw (``metrics.jsonl``) and each process prints
what it holds, so a launch that silently starts one process fails here. Tolerances are measured
on this CPU: gradients averaged across processes are summed in another order than one process's.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import run_metrics, small_run
from trainer.run import main

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainer.run"]
HOLDS = re.compile(r"process (\d) of 2 \((\w+)\) holds (\d+) of (\d+) transformer weights")


def launch(flags: list[str]) -> str:
    done = subprocess.run(LAUNCH + flags, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def max_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def test_fsdp2_full_finetune_shards_in_half_and_equals_one_process(tmp_path):
    """With gradient checkpointing under FSDP2; then one process's checkpoint resumed on two."""
    from diffusers import FluxTransformer2DModel

    flags = small_run(tmp_path, iterations=2, prompts_per_iter=1, group_size=4, updates_per_iter=1,
                      checkpoint_every=1) + ["--full-finetune", "--learning-rate", "1e-4"]
    main(flags + ["--name", "one"])
    out = launch(flags + ["--sharding", "fsdp", "--checkpointing", "full", "--name", "two"])
    holds = {int(rank): (int(here), int(total)) for rank, kind, here, total in HOLDS.findall(out) if kind == "fsdp"}
    assert sorted(holds) == [0, 1]
    total = holds[0][1]
    assert sum(here for here, _ in holds.values()) == total  # every weight lives on exactly one process
    assert all(0.45 < here / total < 0.55 for here, _ in holds.values())
    one, two = run_metrics(tmp_path / "runs" / "one"), run_metrics(tmp_path / "runs" / "two")
    assert [r["world_size"] for r in two] == [2, 2] and two[0]["sharding"] == "fsdp"
    for a, b in zip(one, two):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)  # measured: 8e-8 relative
    # two AdamW steps of 1e-4 each: the weights agree to 5.5e-7 (0.3 % of the change they made)
    weights = Path("transformer") / "diffusion_pytorch_model.safetensors"
    assert max_difference(tmp_path / "runs" / "one" / weights, tmp_path / "runs" / "two" / weights) <= 5e-6
    loaded = FluxTransformer2DModel.from_pretrained(str(tmp_path / "runs" / "two" / "transformer"))
    assert sum(p.numel() for p in loaded.parameters()) == total  # the export is whole, in diffusers layout
    # one process's whole checkpoint after iteration 1, resumed under an FSDP2 launch on two
    runs = tmp_path / "runs"
    shutil.copytree(runs / "one", runs / "one-then-two")
    shutil.rmtree(runs / "one-then-two" / "checkpoints" / "iter-000002")
    shutil.rmtree(runs / "one-then-two" / "transformer")
    done = subprocess.run(LAUNCH + ["--resume", str(runs / "one-then-two")], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=os.environ | {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(r["world_size"], r["sharding"]) for r in run_metrics(runs / "one-then-two")] == [(1, "none"), (2, "fsdp")]
    assert max_difference(runs / "one" / weights, runs / "one-then-two" / weights) <= 5e-6


def test_an_fsdp2_checkpoint_resumes_on_two_processes_exactly_and_on_one_within_rounding(tmp_path):
    """Under FSDP2 each process writes its shards (torch.distributed.checkpoint); a resume reshards them."""
    flags = small_run(tmp_path, iterations=2, prompts_per_iter=1, group_size=4, updates_per_iter=1,
                      checkpoint_every=1)
    launch(flags + ["--sharding", "fsdp", "--name", "straight"])
    runs = tmp_path / "runs"
    shards = runs / "straight" / "checkpoints" / "iter-000001" / "shards"  # each process wrote its own
    assert {p.name for p in shards.iterdir()} >= {".metadata", "__0_0.distcp", "__1_0.distcp"}
    for name in ("on-two", "on-one"):
        shutil.copytree(runs / "straight", runs / name)
        shutil.rmtree(runs / name / "lora")
    shutil.rmtree(runs / "on-two" / "checkpoints" / "iter-000002")  # as a kill after iteration 1 leaves it
    out = launch(["--resume", str(runs / "on-two")])
    assert out.count("resumed") == 1  # said once, by the main process
    # a shard file cut short is found as it is read: the resume falls back to the checkpoint before
    shard = runs / "on-one" / "checkpoints" / "iter-000002" / "shards" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    damaged = subprocess.run([sys.executable, "-m", "trainer.run", "--resume", str(runs / "on-one")], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert damaged.returncode == 0, damaged.stderr[-3000:]
    assert f"warning: checkpoint {runs / 'on-one' / 'checkpoints' / 'iter-000002'} is damaged" in damaged.stderr
    assert "resumed" in damaged.stdout and "from iter-000001" in damaged.stdout
    lora = Path("lora") / "pytorch_lora_weights.safetensors"
    assert max_difference(runs / "straight" / lora, runs / "on-two" / lora) <= 1e-6  # measured: 0
    assert max_difference(runs / "straight" / lora, runs / "on-one" / lora) <= 1e-6  # measured: 5e-8
    # the FSDP2 export is the one-process export: the same ComfyUI LoRA (whose keys tests/comfyui checks
    # against ComfyUI's own key map), and diffusers' load_lora_weights takes it
    comfy = Path("lora") / "comfyui_lora.safetensors"
    assert max_difference(runs / "straight" / comfy, runs / "on-one" / comfy) <= 1e-6
    from mixgrpo.models import load_flow_model
    from mixgrpo.models.embedded import EMBEDDED_DIR
    from trainer.outputs import load_lora_into

    model = load_flow_model(EMBEDDED_DIR)
    load_lora_into(model, runs / "straight" / "lora")
    assert "mixgrpo" in model.transformer.peft_config
    assert [r["world_size"] for r in run_metrics(runs / "on-one")] == [2, 1]


@pytest.mark.parametrize("pipeline", ["on-policy", "one-step-off"])
def test_a_process_whose_rewards_all_fail_makes_the_same_passes_and_the_same_update(tmp_path, pipeline):
    """Rank 1's group (one prompt) gets only 500s from the judge: it trains nothing, yet it must make every
    pass the others make (under DDP a missing backward would leave rank 0 waiting forever; under FSDP2
    every forward is a collective, the proximal forward of a one-step-off update included), and the
    step must be rank 0's valid samples' mean, as one process computes it."""
    import threading

    from test_http_judge import Judge

    judge = Judge(lambda k, prompt: "500" if prompt == "a blue square" else "ok")
    threading.Thread(target=judge.serve_forever, daemon=True).start()
    off = pipeline == "one-step-off"
    try:
        (tmp_path / "train.txt").write_text("a red circle\na blue square\n")
        (tmp_path / "eval.txt").write_text("a red circle\n")
        flags = small_run(tmp_path, iterations=3 if off else 2, prompts_per_iter=2, group_size=4, updates_per_iter=2,
                          micro_batch=1, checkpoint_every=3 if off else 2, reward="http", prompts=tmp_path / "train.txt",
                          eval_prompts=tmp_path / "eval.txt", pipeline=pipeline) + [
            "--reward-option", f"http.url={judge.url}", "--reward-option", "http.retries=0"]
        main(flags + ["--name", "one"])
        launch(flags + ["--name", "two"] + (["--sharding", "fsdp"] if off else []))
    finally:
        judge.shutdown()
    one, two = run_metrics(tmp_path / "runs" / "one"), run_metrics(tmp_path / "runs" / "two")
    assert [r["world_size"] for r in two] == [2] * len(one)
    assert [r["failed_samples"] for r in one] == [r["failed_samples"] for r in two] == [4] * len(one)
    # every process stepped, none waited (one-step-off: the first iteration has nothing to train)
    assert [r["updates"] for r in two] == [r["updates"] for r in one] == ([0, 2, 2] if off else [2, 2])
    # one process rolls both groups out in one batch, two processes one each: the images differ in
    # float rounding, and the z-scores of four close rewards magnify that (measured: 1.6e-5 relative)
    for a, b in zip(one, two):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    lora = Path("lora") / "pytorch_lora_weights.safetensors"
    assert max_difference(tmp_path / "runs" / "one" / lora, tmp_path / "runs" / "two" / lora) <= 1e-5
    if off:  # the waiting batch is checkpointed whole: both processes' rows
        pending = load_file(str(tmp_path / "runs" / "two" / "checkpoints" / "iter-000003" / "pending.safetensors"))
        assert pending["advantages"].shape == (8,) and pending["0.x"].shape[0] == 8


def test_ddp_lora_on_two_processes_equals_one_and_two_nodes_equal_one_node(tmp_path):
    """DDP on two processes against one; then ``--num_machines 2``: two launches of one process each,
    joined over TCP at 127.0.0.1, against the one launch of two."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    # one prompt group of 4 samples: process 0 rolls out members 0–1, process 1 members 2–3
    flags = small_run(tmp_path, iterations=1, prompts_per_iter=1, group_size=4, updates_per_iter=1,
                      checkpoint_every=1)
    main(flags + ["--name", "one"])
    out = launch(flags + ["--name", "one-node"])
    holds = HOLDS.findall(out)
    assert sorted(h[0] for h in holds) == ["0", "1"] and {h[1] for h in holds} == {"ddp"}
    assert all(h[2] == h[3] for h in holds)  # DDP: each process holds the whole model
    # each process says where its model is and which local rank (the GPU index on CUDA: cuda:<local rank>) it is
    assert sorted(re.findall(r"process (\d) of 2 \(ddp\) holds \d+ of \d+ transformer weights on cpu \(local rank "
                             r"(\d)\)", out)) == [("0", "0"), ("1", "1")]
    (one,), (two,) = run_metrics(tmp_path / "runs" / "one"), run_metrics(tmp_path / "runs" / "one-node")
    assert (one["world_size"], two["world_size"], two["sharding"]) == (1, 2, "ddp")
    # whole-group statistics; metrics.jsonl rounds advantages to 6 decimals, so one rounding step apart
    assert one["advantages"] == pytest.approx(two["advantages"], abs=2e-6)
    assert one["reward_mean"] == pytest.approx(two["reward_mean"], abs=1e-6)
    assert one["grad_norm"] == pytest.approx(two["grad_norm"], rel=1e-5)  # measured: 2e-7 relative
    # after one AdamW step the LoRA weights agree to float32 rounding (measured: 2.7e-7)
    lora = Path("lora") / "pytorch_lora_weights.safetensors"
    assert max_difference(tmp_path / "runs" / "one" / lora, tmp_path / "runs" / "one-node" / lora) <= 1e-5
    # each process sampled and scored half of the held-out images; joined, they are one process's evaluation
    import json
    whole, split = (json.loads((tmp_path / "runs" / name / "eval.json").read_text()) for name in ("one", "one-node"))
    for a, b in zip(whole["evaluations"], split["evaluations"]):
        assert a["prompts"] == b["prompts"] and len(a["scores"]) == 23
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-6)  # measured: identical

    node = [*LAUNCH[:LAUNCH.index("--num_machines")], "--num_machines", "2", "--main_process_ip", "127.0.0.1",
            "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no"]
    second = subprocess.Popen(node + ["--machine_rank", "1", "-m", "trainer.run", *flags, "--name", "two-nodes"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = subprocess.run(node + ["--machine_rank", "0", "-m", "trainer.run", *flags, "--name", "two-nodes"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    out, err = second.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr[-2000:], err[-2000:])
    assert "process 0 of 2 (ddp)" in first.stdout and "process 1 of 2 (ddp)" in out  # one process per node
    runs = tmp_path / "runs"
    (a,), (b,) = run_metrics(runs / "one-node"), run_metrics(runs / "two-nodes")
    assert b["world_size"] == 2 and a["reward_mean"] == b["reward_mean"] and a["grad_norm"] == b["grad_norm"]
    assert max_difference(runs / "one-node" / lora, runs / "two-nodes" / lora) == 0.0  # the same arithmetic


def test_a_full_finetune_with_kl_keeps_a_frozen_sharded_reference(tmp_path):
    """``--kl-beta`` with ``--full-finetune`` under FSDP2: the KL to a frozen, sharded copy of the starting
    transformer (the first iteration's second update already sees a moved policy)."""
    flags = small_run(tmp_path, iterations=2, prompts_per_iter=1, group_size=4, updates_per_iter=2,
                      micro_batch=2, checkpoint_every=2) + ["--full-finetune", "--learning-rate", "1e-4",
                                                            "--kl-beta", "0.01"]
    out = launch(flags + ["--sharding", "fsdp", "--name", "two"])
    # each process holds half of the reference, frozen, beside its half of the trained transformer
    reference = dict((int(rank), (int(here), int(total), state)) for rank, here, total, state in re.findall(
        r"process (\d) of 2 \(fsdp\) holds \d+ of \d+ transformer weights on cpu \(local rank \d\); (\d+) of (\d+) KL "
        r"reference weights, (\w+)", out))
    assert sorted(reference) == [0, 1] and {state for _, _, state in reference.values()} == {"frozen"}
    total = reference[0][1]
    assert sum(here for here, _, _ in reference.values()) == total and all(
        0.45 < here / total < 0.55 for here, _, _ in reference.values())
    rows = run_metrics(tmp_path / "runs" / "two")
    # 0 until the first step, then it grows (measured 2.4e-5 after 2 iterations; one process: 2.3e-5)
    assert 0 < rows[0]["kl"] < rows[1]["kl"]


def test_a_launch_whose_samples_do_not_split_stops_before_the_model_loads(tmp_path):
    flags = small_run(tmp_path, group_size=3, prompts_per_iter=1, updates_per_iter=1)  # 3 samples, 2 processes
    done = subprocess.run(LAUNCH + flags, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "error: 3 samples per iteration do not split into 2 processes × 1 updates" in done.stderr
    assert "Loading pipeline components" not in done.stderr + done.stdout  # nothing was loaded
    assert not (tmp_path / "runs" / "run").exists()


def test_a_run_folder_the_nodes_do_not_share_is_one_line_before_anything_loads(tmp_path):
    """Two "nodes" on 127.0.0.1, each launched in its own folder with the relative ``--run-dir runs``: each
    sees its own ``runs/``, as nodes without a shared file system would."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    node = [*LAUNCH[:LAUNCH.index("--num_machines")], "--num_machines", "2", "--main_process_ip", "127.0.0.1",
            "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no"]
    run = ["-m", "trainer.run", *small_run(Path("."), iterations=1, prompts_per_iter=1, group_size=4, updates_per_iter=1)]
    here = [tmp_path / "node0", tmp_path / "node1"]
    for folder in here:
        folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    second = subprocess.Popen(node + ["--machine_rank", "1"] + run, cwd=here[1], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    first = subprocess.run(node + ["--machine_rank", "0"] + run, cwd=here[0], capture_output=True, text=True,
                           timeout=600, env=env)
    _, err = second.communicate(timeout=120)
    assert first.returncode != 0 and second.returncode != 0
    line = "error: process(es) 1 of 2 cannot see runs, where the main process writes the run"
    assert line in first.stderr and line in err
    assert "Loading pipeline components" not in first.stderr + err  # nothing was loaded
    assert not (here[0] / "runs" / "run").exists() and not (here[1] / "runs").exists()


def test_hsdp_on_two_nodes_of_two_shards_within_a_node_and_equals_one_process(tmp_path):
    """``--sharding hsdp``: two launches of two processes (``--num_machines 2``) on 127.0.0.1; each weight is
    sharded over a node's two processes and replicated across the nodes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    flags = small_run(tmp_path, iterations=1, prompts_per_iter=1, group_size=4, updates_per_iter=1,
                      checkpoint_every=1) + ["--full-finetune", "--learning-rate", "1e-4"]
    main(flags + ["--name", "one"])
    node = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "4",
            "--num_machines", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", port,
            "--mixed_precision", "no", "--dynamo_backend", "no"]
    run = ["-m", "trainer.run", *flags, "--sharding", "hsdp", "--name", "hsdp"]
    second = subprocess.Popen(node + ["--machine_rank", "1"] + run, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    first = subprocess.run(node + ["--machine_rank", "0"] + run, cwd=REPO, capture_output=True, text=True, timeout=600)
    out, err = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr[-2000:], err[-2000:])
    holds = re.findall(r"process (\d) of 4 \((\w+)\) holds (\d+) of (\d+) transformer weights", first.stdout + out)
    assert sorted(rank for rank, *_ in holds) == ["0", "1", "2", "3"] and {kind for _, kind, *_ in holds} == {"hsdp"}
    assert all(0.45 < int(here) / int(total) < 0.55 for _, _, here, total in holds)  # half a model: a node's share
    (one,), (hsdp,) = run_metrics(tmp_path / "runs" / "one"), run_metrics(tmp_path / "runs" / "hsdp")
    assert (hsdp["world_size"], hsdp["sharding"]) == (4, "hsdp")
    assert one["reward_mean"] == pytest.approx(hsdp["reward_mean"], abs=1e-6)
    assert one["grad_norm"] == pytest.approx(hsdp["grad_norm"], rel=1e-5)
    weights = Path("transformer") / "diffusion_pytorch_model.safetensors"
    assert max_difference(tmp_path / "runs" / "one" / weights, tmp_path / "runs" / "hsdp" / weights) <= 5e-6


def test_under_fsdp2_only_the_main_process_reads_the_weights(tmp_path):
    """A FLUX-layout model widened to 546 MB: process 1 builds it on the meta device and receives its half from
    process 0 once sharded, so its peak host memory stays far below process 0's, which read the whole model.
    (Every FSDP2 test here runs this way and equals one process that loaded everything.)"""
    from mixgrpo.models.tiny import TinyConfig, build_tiny_flux

    wide = tmp_path / "wide"
    build_tiny_flux(wide, TinyConfig(hidden=1024, heads=8, double_blocks=2, single_blocks=4))
    (tmp_path / "eval.txt").write_text("a red circle\n")
    out = launch(small_run(tmp_path, iterations=1, prompts_per_iter=1, group_size=4, updates_per_iter=1, eval_seeds=1,
                           eval_prompts=tmp_path / "eval.txt") + ["--model", str(wide), "--sharding", "fsdp"])
    lines = re.findall(r"process (\d) of 2 \(fsdp\) holds (\d+) of (\d+) transformer weights on cpu \(local rank "
                       r"\d\); peak host memory (\d+) MB", out)
    peak = {int(rank): int(mb) for rank, _, _, mb in lines}
    model_mb = int(lines[0][2]) * 4 / 2**20
    assert sorted(peak) == [0, 1] and model_mb > 500
    assert peak[0] - peak[1] > 0.3 * model_mb, (peak, model_mb)

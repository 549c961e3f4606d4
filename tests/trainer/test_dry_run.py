"""``--dry-run``: the checks that need no weights and the plan, nothing loaded; the documented launch lines pass them."""

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import small_run
from trainer.config import parse_config
from trainer.processes import split_problem

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainer.run"]


def test_a_dry_run_checks_prints_the_plan_and_loads_nothing(tmp_path, tiny_flux):
    done = subprocess.run([sys.executable, "-m", "trainer.run", "--dry-run", "--model", str(tiny_flux),
                           "--full-finetune", "--sharding", "fsdp", "--run-dir", str(tmp_path / "runs"), "--name", "x"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert f"dry run of {tmp_path / 'runs' / 'x'}: every check passed; nothing was loaded" in out
    assert "processes: 1 (fsdp), device cpu, mixed precision no" in out
    assert "samples per iteration: 32 = 4 prompts × 8; 32 per process, in 2 update(s) of 16" in out
    assert re.search(r"model: transformer [\d.]+ M parameters in 2 blocks; trains every weight", out)
    assert re.search(r"expected memory per process at 128² \(trainer/memory_plan.py\): load [\d.]+ GB", out)
    assert re.search(r"expected host memory at load \(trainer/memory_plan.py\): main process [\d.]+ GB, plus", out)
    assert "Loading pipeline components" not in done.stderr and not (tmp_path / "runs" / "x").exists()


def test_a_dry_run_refuses_what_a_run_would_refuse_in_one_line(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "trainer.run", "--dry-run", "--model", str(tmp_path / "none")],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith(
        f"error: model folder {tmp_path / 'none'} does not exist")
    # a launch of 2 processes whose 3 samples cannot split
    split = subprocess.run(LAUNCH + small_run(tmp_path, group_size=3, prompts_per_iter=1, updates_per_iter=1)
                           + ["--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert split.returncode != 0 and "error: 3 samples per iteration do not split into 2 processes" in split.stderr
    # a shipped recipe launched at a world size it does not split into: one line (once per node), in seconds
    started = time.time()
    bad = subprocess.run(LAUNCH + ["--config", "trainer/configs/flux-dev-lora.yaml", "--dry-run"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert time.time() - started < 10
    said = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert said == ["error: 12 samples per iteration do not split into 2 processes × 4 updates; change group_size, "
                    "prompts_per_iter or updates_per_iter."]
    done = subprocess.run(LAUNCH + small_run(tmp_path, group_size=4, prompts_per_iter=1) + ["--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("every check passed") == 1  # printed by the main process
    assert "processes: 2 (ddp)" in done.stdout and "4 = 1 prompts × 4; 2 per process" in done.stdout
    host = re.search(r"expected host memory at load \(trainer/memory_plan.py\): main process ([\d.]+) GB, each other "
                     r"([\d.]+) GB; a node of 2: ([\d.]+) GB", done.stdout)
    assert host and host[1] == host[2] and float(host[3]) == pytest.approx(2 * float(host[1]), abs=0.01)  # DDP: all read


def test_an_accelerate_config_with_hybrid_sharding_asks_for_hsdp(tmp_path):
    config = tmp_path / "hsdp.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nmixed_precision: 'no'\n"
                      "num_machines: 1\nnum_processes: 2\nfsdp_config:\n  fsdp_version: 2\n"
                      "  fsdp_sharding_strategy: HYBRID_SHARD\n")
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                           "-m", "trainer.run", *small_run(tmp_path, group_size=4, prompts_per_iter=1), "--dry-run"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "processes: 2 (hsdp)" in done.stdout


def documented_launches() -> list[tuple[str, list[str]]]:
    """``(accelerate config, trainer flags)`` of every ``accelerate launch --config_file`` line in the docs."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for body in re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.S | re.M):
            for line in re.sub(r"\\\n\s*", " ", body).splitlines():
                words = shlex.split(line.split(" #")[0]) if line.strip().startswith("accelerate launch") else []
                if "--config_file" in words:
                    found.append((words[words.index("--config_file") + 1], words[words.index("trainer.run") + 1:]))
    return found


def test_every_documented_launch_line_splits_at_the_world_size_its_config_declares():
    launches = documented_launches()
    assert len(launches) >= 4
    for config_file, flags in launches:
        world = yaml.safe_load((REPO / config_file).read_text())["num_processes"]
        # files that only exist on the user's machine are left out; everything else is checked as given
        kept, skip = [], False
        for word in flags:
            if skip:
                skip = False
                continue
            if word in ("--prompts", "--eval-prompts", "--model", "--run-dir"):
                skip = True
                continue
            kept.append(word)
        cfg = parse_config(kept)
        problem = split_problem(cfg.group_size * cfg.prompts_per_iter, world, cfg.updates_per_iter)
        assert problem is None, f"{config_file} with {' '.join(flags)}: {problem}"


def test_a_dry_run_plans_any_supported_model(tmp_path):
    from mixgrpo.models.tiny_zimage import build_tiny_zimage

    build_tiny_zimage(tmp_path / "zimage")
    done = subprocess.run([sys.executable, "-m", "trainer.run", "--dry-run", "--model", str(tmp_path / "zimage"),
                           "--resolution", "64", "--run-dir", str(tmp_path / "runs")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"model: transformer [\d.]+ M parameters in 4 blocks; trains LoRA rank", done.stdout)
    bad = subprocess.run([sys.executable, "-m", "trainer.run", "--dry-run", "--model", str(tmp_path / "zimage"),
                          "--resolution", "72", "--run-dir", str(tmp_path / "runs")], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: Z-Image needs a height and width divisible by 16 (VAE down-sampling × patch size); got 72×72. "
        "Try 64×64.")


@pytest.mark.parametrize("builder", ["qwenimage", "flux2"])
def test_a_dry_run_counts_qwen_image_and_flux2_from_their_folders(builder, tmp_path):
    """Their text encoders (Qwen2.5-VL, Mistral 3) and VAEs (3-D; batch-normed) are counted from config files."""
    import importlib

    from trainer.run import main

    getattr(importlib.import_module(f"mixgrpo.models.tiny_{builder}"), f"build_tiny_{builder}")(tmp_path / "model")
    plan = main(["--dry-run", "--model", str(tmp_path / "model"), "--resolution", "64",
                 "--run-dir", str(tmp_path / "runs")])["plan"]
    out = "\n".join(plan)
    assert re.search(r"model: transformer [\d.]+ M parameters in 2 blocks; trains LoRA rank 32: [\d.]+ M; text "
                     r"encoders 0\.[1-9] M, VAE 0\.[1-9] M", out), out

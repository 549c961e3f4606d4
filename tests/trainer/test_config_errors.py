"""Bad input to the trainer is a clear error, raised before any work."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import small_run
from mixgrpo.errors import ModelLoadError, ScheduleError
from mixgrpo.rewards import RewardSpecError
from trainer.config import ConfigError, TrainConfig, build_parser, load_yaml, parse_config
from trainer.loop import build

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]


def test_defaults_flags_and_yaml_layering(tmp_path):
    cfg = parse_config([])
    assert cfg == TrainConfig() and cfg.window == 4 and cfg.algo == "flash"
    assert parse_config(["--config", str(REPO / "trainer/configs/embedded.yaml")]) == cfg  # the recipe is the defaults
    (tmp_path / "c.yaml").write_text("window: 2\nalgo: mixgrpo\nlearning_rate: 1.0e-5\n")
    cfg = parse_config(["--config", str(tmp_path / "c.yaml"), "--window", "3", "--no-full-finetune"])
    assert (cfg.window, cfg.algo, cfg.learning_rate, cfg.full_finetune) == (3, "mixgrpo", 1e-5, False)


def test_help_documents_every_field():
    text = build_parser().format_help()
    for name, f in TrainConfig.__dataclass_fields__.items():
        assert (f.metadata.get("flag") or "--" + name.replace("_", "-")) in text


def test_unknown_yaml_key(tmp_path):
    (tmp_path / "c.yaml").write_text("windw: 4\n")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['windw'\]"):
        load_yaml(tmp_path / "c.yaml")


def test_group_of_one():
    with pytest.raises(ConfigError, match="group_size must be ≥ 2"):
        parse_config(["--group-size", "1"])


def test_guidance_scale_is_the_models_unless_set(tmp_path):
    from mixgrpo.models.embedded import EMBEDDED_DIR, read_settings
    from trainer.loop import load_model

    assert load_model(parse_config([])).cfg_scale == read_settings(EMBEDDED_DIR).get("cfg_scale", 1.0)
    assert load_model(parse_config(["--cfg-scale", "1"])).cfg_scale == 1.0
    assert parse_config([]).cfg_scale is None  # unset: the model's own, resolved by the loader
    for bad in ("-2", "0"):  # 0 no longer stands for "the model's own": it is out of range
        with pytest.raises(ConfigError, match=r"cfg_scale must lie in \(0, ∞\)"):
            parse_config(["--cfg-scale", bad])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_xformers_without_cuda():
    with pytest.raises(ConfigError, match="xformers needs a CUDA GPU"):
        parse_config(["--attention", "xformers"])


def test_unknown_reward_and_missing_model(tmp_path):
    with pytest.raises(RewardSpecError, match="unknown reward 'hps3'"):
        build(parse_config(["--reward", "hps3"]))
    with pytest.raises(ModelLoadError, match="does not exist"):
        build(parse_config(["--model", str(tmp_path / "nowhere")]))


def test_window_larger_than_the_trainable_steps(tiny_flux):
    with pytest.raises(ScheduleError, match="window size 8 does not fit a 8-step schedule"):
        build(parse_config(["--model", str(tiny_flux), "--steps", "8", "--window", "8"]))


def test_window_start_past_the_last_trainable_window(tiny_flux):
    # 8 steps, w = 2: the last transition is never trained, so l ≤ 8 − 1 − 2 = 5
    with pytest.raises(ScheduleError, match=r"window start 6 must lie in \[0, max_start=5\]"):
        build(parse_config(["--model", str(tiny_flux), "--steps", "8", "--window", "2", "--window-start", "6"]))
    trainer = build(parse_config(["--model", str(tiny_flux), "--steps", "8", "--window", "2", "--window-start", "5",
                                  "--window-strategy", "frozen"]))
    assert [trainer.windows.left_at(k) for k in range(3)] == [5, 5, 5]


def test_what_an_accelerate_launch_asks_for_is_honoured_or_refused_in_one_line():
    from trainer.launch import launch_sharding, resolve_sharding

    assert launch_sharding({}) == (None, False)
    assert launch_sharding({"ACCELERATE_USE_FSDP": "false"}) == (None, False)  # a plain multi-process launch
    assert launch_sharding({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}) == ("fsdp", False)
    assert launch_sharding({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_OFFLOAD_PARAMS": "true"}) \
        == ("fsdp", True)
    assert launch_sharding({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2",
                            "FSDP_SHARDING_STRATEGY": "HYBRID_SHARD"}) == ("hsdp", False)
    assert resolve_sharding("hsdp", True, {}) == ("hsdp", True)
    with pytest.raises(ConfigError, match="FSDP version 1; trainer.run shards with FSDP2: set fsdp_version: 2"):
        launch_sharding({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"})
    with pytest.raises(ConfigError, match="asked for DeepSpeed, which trainer.run does not use"):
        launch_sharding({"ACCELERATE_USE_DEEPSPEED": "true"})
    assert resolve_sharding(None, False, {}) == ("ddp", False)
    assert resolve_sharding(None, False, {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}) == ("fsdp", False)
    with pytest.raises(ConfigError, match="--sharding ddp contradicts the accelerate launch"):
        resolve_sharding("ddp", False, {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"})
    with pytest.raises(ConfigError, match="--fsdp-offload .* needs --sharding fsdp"):
        resolve_sharding("ddp", True, {})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="without CUDA they live in CPU memory already"):
            parse_config(["--sharding", "fsdp", "--fsdp-offload"])


def test_the_launch_mixed_precision_applies_unless_the_flag_says_otherwise(tmp_path):
    from trainer.launch import resolve_mixed_precision

    assert resolve_mixed_precision("no", {}) == "no" and resolve_mixed_precision("fp16", {}) == "fp16"
    assert resolve_mixed_precision("no", {"ACCELERATE_MIXED_PRECISION": "no"}) == "no"
    assert resolve_mixed_precision("no", {"ACCELERATE_MIXED_PRECISION": "bf16"}) == "bf16"
    assert resolve_mixed_precision("bf16", {"ACCELERATE_MIXED_PRECISION": "bf16"}) == "bf16"
    with pytest.raises(ConfigError, match="--mixed-precision fp16 contradicts the accelerate launch, which asked "
                                          "for bf16"):
        resolve_mixed_precision("fp16", {"ACCELERATE_MIXED_PRECISION": "bf16"})
    # a real launch: accelerate passes its --mixed_precision to the run, which records it
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
                           "--mixed_precision", "bf16", "-m", "trainer.run",
                           *small_run(tmp_path, iterations=1, eval_seeds=1)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    import yaml
    assert yaml.safe_load((tmp_path / "runs" / "run" / "config.yaml").read_text())["mixed_precision"] == "bf16"


def test_an_fsdp1_accelerate_config_is_refused_before_anything_loads(tmp_path):
    config = tmp_path / "fsdp1.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nnum_machines: 1\n"
                      "num_processes: 1\nfsdp_config:\n  fsdp_version: 1\n")
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                           "-m", "trainer.run", "--run-dir", str(tmp_path / "runs"), "--iterations", "1"],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "error: accelerate launch asked for FSDP version 1" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_unset_options_are_none_and_older_runs_zero_sentinels_read_as_unset():
    from trainer.config import saved_config

    fresh = parse_config([])
    assert (fresh.eta, fresh.solver, fresh.compression, fresh.cfg_scale, fresh.dance_first) == (None,) * 5
    older = saved_config({"eta": 0.0, "solver": "", "compression": 0.0, "cfg_scale": 0.0, "dance_first": 0,
                          "prompts": "", "name": "", "window": 4, "full_finetune": False})
    assert (older.eta, older.solver, older.compression, older.cfg_scale, older.dance_first, older.prompts) == (None,) * 6
    assert older.window == 4 and older.full_finetune is False  # real values (and False) are kept
    assert saved_config({"eta": 0.3}, resume="runs/x").eta == 0.3
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['windw'\]"):
        saved_config({"windw": 4})


def test_help_names_each_algorithms_own_value_of_an_unset_option():
    text = " ".join(build_parser().format_help().split())
    assert "SDE noise level η [valid: (0, 10]] (default: the algorithm's own: mixgrpo 0.7, flash 0.7, " \
           "flash_star 0.7, dancegrpo 0.3)" in text
    assert "(default: the algorithm's own: mixgrpo euler, flash dpm2m, flash_star dpm2m, dancegrpo euler)" in text

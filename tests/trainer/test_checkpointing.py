"""``--checkpointing off | full | selective | auto``: which blocks recompute, what auto picks, and that every mode
trains the same run."""

import pytest
import torch

from conftest import assert_same_run, small_run
from trainer.run import main

pytestmark = pytest.mark.trainer


def test_each_mode_recomputes_the_blocks_it_says():
    """Block forwards during one forward and backward of 4 blocks: off 4, full 8, selective 4 + 2."""
    from mixgrpo.models.checkpointing import apply_checkpointing
    from mixgrpo.models.flux import FluxAdapter
    from mixgrpo.models.tiny import TinyConfig, build_tiny_flux

    pipe = build_tiny_flux(None, TinyConfig(double_blocks=2, single_blocks=2))
    model = FluxAdapter(pipe, max_sequence_length=16)
    model.add_lora(rank=2)
    calls = []
    for index, block in enumerate(model.shard_units()):
        block.register_forward_pre_hook(lambda module, args, index=index: calls.append(index))
    cond = model.encode_prompts(["a red circle"])
    x = torch.randn(1, *model.latent_shape(64, 64))
    counts = {}
    for mode in ("off", "full", "selective", "off"):
        assert apply_checkpointing(model, mode) == {"off": 0, "full": 4, "selective": 2}[mode]
        calls.clear()
        model.velocity(x, torch.tensor([0.5]), cond).square().mean().backward()
        counts[mode] = sorted(calls)
    assert counts["off"] == [0, 1, 2, 3]
    assert counts["full"] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert counts["selective"] == [0, 0, 1, 2, 2, 3]  # every other block: 0 and 2


def test_auto_picks_off_where_the_activations_fit_else_selective_else_full():
    from mixgrpo.models.checkpointing import activation_bytes, resolve_mode

    shape = dict(blocks=10, tokens=1000, hidden=100, micro_batch=2)
    off, selective = activation_bytes(10, 0, 1000, 100, 2), activation_bytes(10, 5, 1000, 100, 2)
    assert selective < off
    assert resolve_mode("auto", **shape, free_bytes=None) == "off"  # a CPU
    assert resolve_mode("auto", **shape, free_bytes=2 * off) == "off"
    assert resolve_mode("auto", **shape, free_bytes=2 * off - 1) == "selective"
    assert resolve_mode("auto", **shape, free_bytes=2 * selective - 1) == "full"
    assert resolve_mode("selective", **shape, free_bytes=0) == "selective"
    with pytest.raises(ValueError, match="checkpointing must be one of off, full, selective, auto"):
        resolve_mode("some", **shape, free_bytes=None)


def test_every_mode_trains_the_same_run(tmp_path, capsys):
    """Recomputation repeats the same operations on the same inputs: the metrics and the LoRA are the run without it.
    ``auto`` on a CPU says what it picked."""
    runs = {}
    for mode in ("off", "full", "selective", "auto"):
        main(small_run(tmp_path / mode, iterations=2) + ["--checkpointing", mode])
        runs[mode] = tmp_path / mode / "runs" / "run"
    for mode in ("full", "selective", "auto"):
        assert_same_run(runs["off"], runs[mode], 2)
    said = capsys.readouterr().out
    assert "checkpointing: auto → off (16 samples of 88 tokens per forward, on a CPU)" in said  # 8, doubled by CFG


def test_the_earlier_gradient_checkpointing_key_and_flag_mean_full(tmp_path):
    from trainer.config import parse_config, saved_config

    (tmp_path / "old.yaml").write_text("gradient_checkpointing: true\n")
    assert parse_config(["--config", str(tmp_path / "old.yaml")]).checkpointing == "full"
    assert parse_config(["--gradient-checkpointing"]).checkpointing == "full"
    assert saved_config({"gradient_checkpointing": False}).checkpointing == "off"
    assert parse_config([]).checkpointing == "off"

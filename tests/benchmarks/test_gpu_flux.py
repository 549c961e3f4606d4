"""The GPU benchmark's code path, run on CPU with the tiny preset (the same trainer iteration as on CUDA)."""

import json

import pytest

from benchmarks import gpu_flux

pytestmark = pytest.mark.trainer


def test_tiny_preset_runs_every_row_with_consistent_counts(tmp_path):
    out = tmp_path / "gpu.md"
    rows = gpu_flux.main(["--preset", "tiny", "--device", "cpu", "--resolutions", "64", "--group", "4",
                          "--micro-batch", "4", "--lora-rank", "4", "--out", str(out)])
    by_algo = {r["algo"]: r for r in rows}
    assert list(by_algo) == ["dancegrpo", "mixgrpo", "flash_star"]
    # DanceGRPO and MixGRPO sample 25 steps, Flash* its compressed 8; a group of 4 shares one trunk
    assert by_algo["dancegrpo"]["nfe"] == by_algo["mixgrpo"]["nfe"] == 25
    assert by_algo["flash_star"]["nfe"] == 8
    assert by_algo["dancegrpo"]["network_evals"] == 4 * 25
    assert by_algo["flash_star"]["network_evals"] <= 4 * 8
    # FLOPs: 14 trained steps per sample for DanceGRPO 25/14 against 4 for the windowed rows
    assert gpu_flux.trained_rows("dancegrpo", 4, 25, 4, 0.6) == 56
    assert gpu_flux.trained_rows("mixgrpo", 4, 25, 4, 0.6) == 16
    assert by_algo["dancegrpo"]["pflop"] > by_algo["mixgrpo"]["pflop"] > by_algo["flash_star"]["pflop"] > 0
    for r in rows:  # exact on-policy numerics in the update, as in the trainer
        assert r["max_abs_log_ratio"] < 1e-5
    assert by_algo["dancegrpo"]["ratio_to_dancegrpo"] == 1.0
    table = out.read_text()
    assert table.count("| 64² |") == 3 and "MixGRPO-Flash*" in table
    assert len(json.loads(out.with_suffix(".json").read_text())) == 3


def test_flop_count_grows_with_resolution():
    pipe, tokens = gpu_flux.build_pipeline("tiny", "cpu", __import__("torch").float32)
    from mixgrpo.models.flux import FluxAdapter

    model = FluxAdapter(pipe, max_sequence_length=tokens)
    small, small_train = gpu_flux.count_flops(model, 64, tokens)
    large, _ = gpu_flux.count_flops(model, 128, tokens)
    assert large > 2 * small > 0  # 4× the image tokens; text tokens fixed
    assert small_train > 2 * small  # backward costs at least a forward again

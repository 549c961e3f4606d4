"""The memory plan counts the real FLUX.1-dev architecture and says which settings fit an 80 GB GPU."""

import pytest

from benchmarks import memory

pytestmark = pytest.mark.trainer


def test_flux_dev_counts_and_which_settings_fit():
    sizes = memory.flux_dev_sizes(lora_rank=32)
    assert sizes["params"] == pytest.approx(11.9e9, rel=0.01) and sizes["blocks"] == 57  # FLUX.1-dev: 12 B
    # rank 32 on to_q, to_k, to_v, to_out.0: 19 double blocks (+ their to_out) and 38 single blocks
    assert sizes["lora"] == 32 * (19 * 4 * (3072 + 3072) + 38 * 3 * (3072 + 3072))
    rows = {(r["setting"], r["processes"], r["side"]): r for r in memory.plan(sizes, micro_batch=1)}
    assert not rows[("full, one process", 1, 512)]["fits_80gb"]  # ~190 GB unsharded with AdamW
    assert rows[("full, FSDP2", 8, 720)]["fits_80gb"] and rows[("LoRA, DDP", 1, 720)]["fits_80gb"]
    eight = rows[("full, FSDP2", 8, 512)]
    assert eight["adamw"] == pytest.approx(8 * sizes["params"] / 8 / 1e9)  # two fp32 moments, an eighth each
    assert memory.activations(720, 1) > memory.activations(512, 1)

"""The memory plan counts the real FLUX.1-dev components, says which settings fit an 80 GB GPU, and sets
GPU measurements beside its estimates."""

import pytest

from benchmarks import memory
from trainer import memory_plan

pytestmark = pytest.mark.trainer


@pytest.fixture(scope="module")
def sizes():
    return memory.flux_dev_sizes(lora_rank=32)


def test_flux_dev_counts(sizes):
    assert sizes["params"] == pytest.approx(11.9e9, rel=0.01) and sizes["blocks"] == 57  # FLUX.1-dev: 12 B
    # rank 32 on to_q, to_k, to_v, to_out.0: 19 double blocks (+ their to_out) and 38 single blocks
    assert sizes["lora"] == 32 * (19 * 4 * (3072 + 3072) + 38 * 3 * (3072 + 3072))
    assert sizes["text_encoders"] == pytest.approx(4.89e9, rel=0.01)  # T5-XXL encoder 4.76 B + CLIP-L text 123 M
    assert sizes["vae"] == pytest.approx(84e6, rel=0.02)


def test_which_settings_fit_and_which_phase_sets_the_peak(sizes):
    rows = {(r["setting"], r["processes"], r["side"]): r for r in memory.plan(sizes, micro_batch=1)}
    lora = rows[("LoRA, DDP", 1, 720)]
    assert lora["fits_80gb"] and lora["weights"] == pytest.approx((2 * sizes["params"] + 4 * sizes["lora"]) / 1e9)
    # the load holds T5-XXL in bf16 and both fp32 reward models beside the bf16 transformer
    assert lora["load"] == pytest.approx(lora["weights"] + 2 * (sizes["text_encoders"] + sizes["vae"]) / 1e9 + 7.888)
    assert lora["gpu"] == max(lora["load"], lora["decode"], lora["update"])
    assert not rows[("full, one process", 1, 512)]["fits_80gb"]  # ~250 GB unsharded with AdamW
    eight = rows[("full, FSDP2", 8, 512)]
    assert eight["fits_80gb"] and eight["adamw"] == pytest.approx(8 * sizes["params"] / 8 / 1e9)
    assert eight["load"] > 4 * sizes["params"] / 1e9  # the main process reads the whole fp32 transformer first
    assert eight["temporaries"] == pytest.approx(eight["gradients"])  # AdamW's √v buffer: 4 bytes per shard
    assert memory_plan.activations(720, 1) > memory_plan.activations(512, 1)
    assert memory_plan.decode_per_image(720) == 4 * 128 * 720 * 720 * 2


def test_gpu_measurements_sit_beside_their_estimates():
    checks = memory.measured_beside_estimate()
    assert {c["source"] for c in checks} == {"benchmarks/results/gpu.md", "benchmarks/results/gpu_cli.md"}
    for c in checks:  # the plan is a lower bound within a third of what the GPU allocated
        assert 1.0 <= c["measured_over_estimate"] < 1.35


def test_host_memory_of_a_node_of_eight(sizes):
    """Under FSDP2 only the main process reads the transformer; under DDP every process does."""
    rows = {(r["setting"], r["processes"], r["side"]): r for r in memory.plan(sizes, micro_batch=1)}
    encoders_vae = 2 * (sizes["text_encoders"] + sizes["vae"]) / 1e9
    ddp, full = rows[("LoRA, DDP", 8, 512)], rows[("full, FSDP2", 8, 512)]
    assert ddp["host_main"] == ddp["host_other"] == pytest.approx(2 * sizes["params"] / 1e9 + encoders_vae)
    assert ddp["host_node"] == pytest.approx(8 * ddp["host_main"])
    assert full["host_main"] == pytest.approx(4 * sizes["params"] / 1e9 + encoders_vae)  # the whole fp32 transformer
    assert full["host_other"] == pytest.approx(encoders_vae)  # built on the meta device
    assert full["host_node"] == pytest.approx(full["host_main"] + 7 * full["host_other"]) and full["host_node"] < 130
    offload = rows[("full, FSDP2 + CPU offload", 8, 512)]  # the shards rest in CPU memory: 16 bytes per parameter
    assert offload["host_other"] == pytest.approx(16 * sizes["params"] / 8 / 1e9)

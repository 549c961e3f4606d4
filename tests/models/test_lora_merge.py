"""Merging trainer LoRA files into transformer weights (used by the ComfyUI loader)."""

import pytest
import torch
from safetensors.torch import save_file

from mixgrpo.errors import ModelLoadError
from mixgrpo.models.lora_merge import find_lora_file, load_and_merge, merge_lora

pytestmark = pytest.mark.models


def test_merge_applies_scaled_low_rank_update_and_strength():
    w = {"blocks.0.attn.to_q.weight": torch.randn(8, 6), "other.weight": torch.randn(3)}
    a, b = torch.randn(2, 6), torch.randn(8, 2)
    lora = {"transformer.blocks.0.attn.to_q.lora_A.weight": a, "transformer.blocks.0.attn.to_q.lora_B.weight": b,
            "transformer.blocks.0.attn.to_q.alpha": torch.tensor(4.0)}
    merged = merge_lora(w, lora, strength=0.5)
    assert torch.allclose(merged["blocks.0.attn.to_q.weight"], w["blocks.0.attn.to_q.weight"] + 0.5 * 2.0 * b @ a)
    assert merged["other.weight"] is w["other.weight"]
    no_alpha = {k: v for k, v in lora.items() if not k.endswith(".alpha")}
    assert torch.allclose(merge_lora(w, no_alpha)["blocks.0.attn.to_q.weight"], w["blocks.0.attn.to_q.weight"] + b @ a)


def test_files_and_errors(tmp_path):
    w = {"m.weight": torch.zeros(4, 4)}
    run = tmp_path / "run"
    (run / "lora").mkdir(parents=True)
    save_file({"transformer.m.lora_A.weight": torch.ones(1, 4), "transformer.m.lora_B.weight": torch.ones(4, 1)},
              str(run / "lora" / "comfyui_lora.safetensors"))
    assert find_lora_file(run).name == "comfyui_lora.safetensors"
    assert torch.equal(load_and_merge(w, run, 2.0)["m.weight"], torch.full((4, 4), 2.0))
    with pytest.raises(ModelLoadError, match="no LoRA found"):
        find_lora_file(tmp_path / "missing")
    (tmp_path / "x.pt").write_bytes(b"0")
    with pytest.raises(ModelLoadError, match="only .safetensors"):
        find_lora_file(tmp_path / "x.pt")
    with pytest.raises(ModelLoadError, match="is not in this flow model .1 of 1 modules are not.: was the LoRA trained on "
                                             "another model"):
        merge_lora({"n.weight": torch.zeros(4, 4)}, {"transformer.m.lora_A.weight": torch.ones(1, 4),
                                                     "transformer.m.lora_B.weight": torch.ones(4, 1)})


def test_each_export_maps_back_to_the_models_modules_and_another_architecture_is_refused(tmp_path):
    """Both exports name the same transformer modules for each adapter (``lora_module`` inverts ``comfyui_lora_key``),
    and a file that records another architecture is one error before any merge."""
    from mixgrpo.models.flux import FluxAdapter
    from mixgrpo.models.flux2 import Flux2Adapter
    from mixgrpo.models.qwenimage import QwenImageAdapter
    from mixgrpo.models.zimage import ZImageAdapter

    modules = {FluxAdapter: "single_transformer_blocks.2.attn.to_q", ZImageAdapter: "layers.0.attention.to_q",
               QwenImageAdapter: "transformer_blocks.1.attn.to_out.0",
               Flux2Adapter: "single_transformer_blocks.7.attn.to_qkv_mlp_proj"}
    for adapter, module in modules.items():
        exported = adapter.comfyui_lora_key(f"{module}.lora_A.weight").removesuffix(".lora_A.weight")
        assert adapter.lora_module(exported) == module == adapter.lora_module(f"transformer.{module}")

    w = {"layers.0.attention.to_q.weight": torch.zeros(4, 4)}
    lora = {"diffusion_model.layers.0.attention.to_q.lora_A.weight": torch.ones(1, 4),
            "diffusion_model.layers.0.attention.to_q.lora_B.weight": torch.ones(4, 1)}
    save_file(lora, str(tmp_path / "zimage.safetensors"), metadata={"family": "Z-Image"})
    assert load_and_merge(w, tmp_path / "zimage.safetensors", 1.0, ZImageAdapter)[
        "layers.0.attention.to_q.weight"].eq(1.0).all()
    with pytest.raises(ModelLoadError, match="trained on Z-Image, and the model is FLUX.2: a LoRA loads only onto"):
        load_and_merge(w, tmp_path / "zimage.safetensors", 1.0, Flux2Adapter)
    save_file(lora, str(tmp_path / "unrecorded.safetensors"))  # another tool's file: its modules decide
    with pytest.raises(ModelLoadError, match="not in this FLUX.1 model"):
        load_and_merge({"transformer_blocks.0.attn.to_q.weight": torch.zeros(4, 4)},
                       tmp_path / "unrecorded.safetensors", 1.0, FluxAdapter)

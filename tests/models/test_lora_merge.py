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
    with pytest.raises(ModelLoadError, match="not in this model"):
        merge_lora({"n.weight": torch.zeros(4, 4)}, {"transformer.m.lora_A.weight": torch.ones(1, 4),
                                                     "transformer.m.lora_B.weight": torch.ones(4, 1)})

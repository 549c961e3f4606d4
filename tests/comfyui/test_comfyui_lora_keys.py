"""The trainer's ComfyUI LoRA export is consumed whole by ComfyUI's own FLUX.1-dev LoRA key map.

FLUX.1-dev's real block counts (19 double, 38 single) on the meta device: no weights are needed,
only the names. Our side: the diffusers transformer with the trainer's LoRA targets, exported by
``trainer.outputs.comfyui_lora_state_dict``. ComfyUI's side: ``comfy.lora.model_lora_keys_unet`` on
a ``comfy.model_base.Flux`` and ``comfy.lora.load_lora``, which reports every key it cannot map.
"""

import json

import pytest
import torch

from comfy_setup import run_in_comfyui
from trainer.outputs import comfyui_lora_state_dict

pytestmark = pytest.mark.comfyui

FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))

#: ComfyUI's side after building ``model``: its LoRA key map, the export's keys loaded through it, what it left out
LOAD_AND_REPORT = """
key_map = comfy.lora.model_lora_keys_unet(model, {})
lora = {k: torch.tensor(16.0) if k.endswith(".alpha") else torch.zeros(1, 1) for k in keys}
unloaded = []
class Catch(logging.Handler):
    def emit(self, record):
        if "not loaded" in record.getMessage():
            unloaded.append(record.getMessage())
logging.getLogger().addHandler(Catch())
patches = comfy.lora.load_lora(lora, key_map)
print(json.dumps({"patches": len(patches), "unloaded": unloaded,
                  "targets": sorted({str(t[0] if isinstance(t, tuple) else t) for t in patches})[:3]}))
"""

COMFY_SIDE = """
import json, logging, torch
import comfy.supported_models, comfy.model_base, comfy.lora
keys = json.loads(open({keys!r}).read())
unet_config = {{"image_model": "flux", "in_channels": 16, "patch_size": 2, "out_channels": 16, "vec_in_dim": 768,
               "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "depth": 19,
               "depth_single_blocks": 38, "axes_dim": [16, 56, 56], "theta": 10000, "qkv_bias": True,
               "guidance_embed": True}}
with torch.device("meta"):
    model = comfy.model_base.Flux(comfy.supported_models.Flux(unet_config), device=torch.device("meta"))
""" + "{load_and_report}"


def exported_modules(build_transformer, targets, key=None) -> dict:
    """The trainer's ComfyUI export of a LoRA on ``targets`` of the transformer ``build_transformer()`` makes (on the
    meta device: only the names matter)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    with torch.device("meta"):
        transformer = build_transformer()
        transformer.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=list(targets)), adapter_name="mixgrpo")
    names = list(get_peft_model_state_dict(transformer, adapter_name="mixgrpo"))
    options = {} if key is None else {"key": key}
    return comfyui_lora_state_dict({n: torch.zeros(1) for n in names}, alpha=64.0, **options)


def comfyui_loads(tmp_path, comfy_side: str, exported: dict) -> tuple[set, dict]:
    """The LoRA modules of ``exported``, and what ComfyUI's key map made of them (``comfy_side`` builds ``model``)."""
    modules = {k.rsplit(".", 1)[0] for k in exported if k.endswith(".alpha")}
    (tmp_path / "keys.json").write_text(json.dumps(sorted(exported)))
    done = run_in_comfyui(comfy_side.format(keys=str(tmp_path / "keys.json"), load_and_report=LOAD_AND_REPORT))
    assert done.returncode == 0, done.stderr[-3000:]
    return modules, json.loads(done.stdout.strip().splitlines()[-1])


def test_flux_dev_lora_export_is_fully_mapped_by_comfyui(tmp_path):
    from diffusers import FluxTransformer2DModel

    from mixgrpo.models.flux import FluxAdapter

    exported = exported_modules(lambda: FluxTransformer2DModel(**FLUX_DEV), FluxAdapter.lora_targets)
    modules, result = comfyui_loads(tmp_path, COMFY_SIDE, exported)
    assert len(modules) == 19 * 4 + 38 * 3  # double: q, k, v, out; single: q, k, v
    assert result["unloaded"] == []
    assert result["patches"] == len(modules)
    assert all(t.startswith("diffusion_model.") for t in result["targets"])


ZIMAGE_SIDE = """
import json, logging, torch
import comfy.supported_models, comfy.model_base, comfy.lora
keys = json.loads(open({keys!r}).read())
unet_config = {{"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 3840, "cap_feat_dim": 2560,
               "n_layers": 30, "qk_norm": True, "n_heads": 30, "n_kv_heads": 30, "axes_dims": [32, 48, 48],
               "axes_lens": [1536, 512, 512], "rope_theta": 256.0, "ffn_dim_multiplier": 8.0 / 3.0,
               "z_image_modulation": True, "time_scale": 1000.0, "pad_tokens_multiple": 32}}
with torch.device("meta"):
    model = comfy.model_base.Lumina2(comfy.supported_models.ZImage(unet_config), device=torch.device("meta"))
""" + "{load_and_report}"


def test_zimage_lora_export_is_fully_mapped_by_comfyui(tmp_path):
    """Z-Image's real sizes (30 joint layers, 2 + 2 refiners, width 3840) on the meta device; ComfyUI 0.3.75 maps
    Z-Image LoRAs by ``diffusion_model.<diffusers module path>``, which the adapter's names are."""
    from diffusers import ZImageTransformer2DModel

    from mixgrpo.models.zimage import ZImageAdapter

    exported = exported_modules(ZImageTransformer2DModel, ZImageAdapter.lora_targets,  # its defaults are Z-Image's
                                key=ZImageAdapter.comfyui_lora_key)
    modules, result = comfyui_loads(tmp_path, ZIMAGE_SIDE, exported)
    assert len(modules) == (30 + 2 + 2) * 4  # every block: q, k, v, out
    assert result["unloaded"] == [] and result["patches"] == len(modules)


QWEN_SIDE = """
import json, logging, torch
import comfy.supported_models, comfy.model_base, comfy.lora
keys = json.loads(open({keys!r}).read())
unet_config = {{"image_model": "qwen_image", "in_channels": 64, "num_layers": 60}}
with torch.device("meta"):
    model = comfy.model_base.QwenImage(comfy.supported_models.QwenImage(unet_config), device=torch.device("meta"))
""" + "{load_and_report}"


def test_qwenimage_lora_export_is_fully_mapped_by_comfyui(tmp_path):
    """Qwen-Image's real sizes (60 blocks, width 3072) on the meta device; ComfyUI 0.3.75 takes Qwen-Image LoRAs
    under ``transformer.<diffusers module path>``."""
    from diffusers import QwenImageTransformer2DModel

    from mixgrpo.models.qwenimage import QwenImageAdapter

    exported = exported_modules(QwenImageTransformer2DModel, QwenImageAdapter.lora_targets,  # defaults: Qwen-Image's
                                key=QwenImageAdapter.comfyui_lora_key)
    modules, result = comfyui_loads(tmp_path, QWEN_SIDE, exported)
    assert len(modules) == 60 * 4  # every block: q, k, v, out
    assert result["unloaded"] == [] and result["patches"] == len(modules)
    assert all(t.startswith("diffusion_model.transformer_blocks.") for t in result["targets"])


FLUX2_SIDE = """
import json, logging, torch
import comfy.supported_models, comfy.model_base, comfy.lora
keys = json.loads(open({keys!r}).read())
unet_config = {{"image_model": "flux2", "axes_dim": [32, 32, 32, 32], "num_heads": 48, "mlp_ratio": 3.0, "theta": 2000,
               "out_channels": 128, "global_modulation": True, "vec_in_dim": None, "mlp_silu_act": True,
               "qkv_bias": False, "ops_bias": False, "default_ref_method": "index", "ref_index_scale": 10.0,
               "patch_size": 1, "in_channels": 128, "hidden_size": 6144, "context_in_dim": 15360, "depth": 8,
               "depth_single_blocks": 48, "guidance_embed": True}}
with torch.device("meta"):
    model = comfy.model_base.Flux2(comfy.supported_models.Flux2(unet_config), device=torch.device("meta"))
""" + "{load_and_report}"


def test_flux2_dev_lora_export_is_fully_mapped_by_comfyui(tmp_path):
    """FLUX.2 [dev]'s real sizes (8 double, 48 single blocks, width 6144) on the meta device, with the unet config
    ComfyUI 0.3.75 detects for it. Its key map takes the double blocks' diffusers names; the single blocks' fused
    projection goes out under BFL's name (``single_blocks.N.linear1``)."""
    from diffusers import Flux2Transformer2DModel

    from mixgrpo.models.flux2 import Flux2Adapter

    exported = exported_modules(Flux2Transformer2DModel, Flux2Adapter.lora_targets,  # defaults: FLUX.2 [dev]'s
                                key=Flux2Adapter.comfyui_lora_key)
    modules, result = comfyui_loads(tmp_path, FLUX2_SIDE, exported)
    assert len(modules) == 8 * 4 + 48  # double: q, k, v, out; single: the fused q, k, v and MLP input
    assert result["unloaded"] == [] and result["patches"] == len(modules)

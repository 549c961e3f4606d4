"""The MixGRPO Sampler on each architecture ComfyUI 0.3.75 supports natively beyond FLUX.1: Qwen-Image, Z-Image and
FLUX.2, each a tiny random model of ComfyUI's own classes (its supported-model config with small sizes). With an
empty window it is ComfyUI's stock Euler sampler exactly; its SDE window and Flash tail run on each."""

import json
from pathlib import Path

import pytest

from comfy_setup import import_pack_code, run_in_comfyui

pytestmark = pytest.mark.comfyui
REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, torch
import comfy.supported_models, comfy.model_patcher
from comfy_extras import nodes_custom_sampler as cs
from mixgrpo_pack.nodes.sampling import MixGRPOSampler
def out(o): return o.args if hasattr(o, "args") else o
ARCH = {
 "Qwen-Image": (comfy.supported_models.QwenImage, {"image_model": "qwen_image", "in_channels": 64, "num_layers": 2, "out_channels": 16, "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": 32, "axes_dims_rope": (8, 12, 12), "patch_size": 2}, 32, (16, 8, 8)),
 "Z-Image": (comfy.supported_models.ZImage, {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 256, "cap_feat_dim": 32, "n_layers": 2, "qk_norm": True, "n_heads": 2, "n_kv_heads": 2, "axes_dims": [32, 48, 48], "axes_lens": [1024, 64, 64], "rope_theta": 256.0, "ffn_dim_multiplier": 8.0 / 3.0, "z_image_modulation": True, "time_scale": 1000.0, "pad_tokens_multiple": 32}, 32, (16, 8, 8)),
 "FLUX.2": (comfy.supported_models.Flux2, {"image_model": "flux2", "axes_dim": [8, 8, 8, 8], "num_heads": 2, "mlp_ratio": 3.0, "theta": 2000, "out_channels": 128, "global_modulation": True, "vec_in_dim": None, "mlp_silu_act": True, "qkv_bias": False, "ops_bias": False, "default_ref_method": "index", "ref_index_scale": 10.0, "patch_size": 1, "in_channels": 128, "hidden_size": 64, "context_in_dim": 96, "depth": 1, "depth_single_blocks": 1, "guidance_embed": True}, 96, (128, 4, 4)),
}
res = {}
for name, (cls, unet, ctx, shape) in ARCH.items():
    mc = cls(unet)
    mc.set_inference_dtype(torch.float32, None)
    m = mc.get_model({})
    g = torch.Generator().manual_seed(0)
    for p in m.parameters():  # ComfyUI leaves weights uninitialised: draw them
        p.data = torch.randn(p.shape, generator=g) * 0.05
    model = comfy.model_patcher.ModelPatcher(m, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    cond = [[torch.randn(1, 7, ctx, generator=g), {"guidance": 3.5, "pooled_output": None} if name == "FLUX.2" else {}]]
    latent = {"samples": torch.zeros(1, *shape)}
    sigmas = out(cs.BasicScheduler.execute(model, "simple", 8, 1.0))[0]
    guider = out(cs.BasicGuider.execute(model, cond))[0]
    noise = out(cs.RandomNoise.execute(5))[0]
    def sample(sampler):
        return out(cs.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, latent))[0]["samples"]
    def mixgrpo(**kw):
        args = dict(window_by="start step", window_start=0, window_percent=0.0, window_size=0, eta=0.7,
                    sde_type="flow", solver="euler", flash_compression=1.0) | kw
        return out(MixGRPOSampler.execute(**args))[0]
    stock = sample(out(cs.KSamplerSelect.execute("euler"))[0])
    ode = sample(mixgrpo())
    window = sample(mixgrpo(window_start=1, window_size=3))
    flash = sample(mixgrpo(window_start=1, window_size=2, solver="dpm++ 2m midpoint", flash_compression=0.4))
    res[name] = {"ode_vs_euler": (ode - stock).abs().max().item(), "window_effect": (window - ode).abs().max().item(),
                 "flash_effect": (flash - ode).abs().max().item(), "shape": list(window.shape),
                 "finite": bool(torch.isfinite(window).all() and torch.isfinite(flash).all())}
print(json.dumps(res))
"""


def test_the_sampler_runs_on_qwen_image_z_image_and_flux2_as_comfyui_builds_them():
    result = run_in_comfyui(import_pack_code(REPO) + SCRIPT)
    assert result.returncode == 0, result.stderr[-4000:]
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(r) == {"Qwen-Image", "Z-Image", "FLUX.2"}
    for name, figures in r.items():
        assert figures["ode_vs_euler"] <= 1e-6, (name, figures)  # an empty window is stock Euler
        assert figures["finite"] and figures["window_effect"] > 1e-2 and figures["flash_effect"] > 1e-2, (name, figures)
    assert r["FLUX.2"]["shape"] == [1, 128, 4, 4]

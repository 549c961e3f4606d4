"""Load MixGRPO Model on each diffusers layout it builds beyond FLUX.1 (Qwen-Image, Z-Image, FLUX.2 [dev] and
[klein]): with a trainer LoRA at strength 0.7, CLIPTextEncode, the MixGRPO Sampler and VAEDecode in a real ComfyUI
give the image the adapter samples on the same σ grid from the same noise with the LoRA merged at 0.7."""

import json
from pathlib import Path

import pytest
import torch

from comfy_setup import import_pack_code, run_in_comfyui

pytestmark = pytest.mark.comfyui
REPO = Path(__file__).resolve().parents[2]
PROMPT = "two blue squares above a green triangle"


def folder_with_lora(family: str, root: Path) -> tuple[Path, Path]:
    """A tiny random pipeline of ``family`` and a LoRA on it, exported as the trainer exports one."""
    from mixgrpo.models import load_flow_model
    from mixgrpo.models.tiny import TinyConfig
    from mixgrpo.models.tiny_flux2 import build_tiny_flux2
    from mixgrpo.models.tiny_qwenimage import build_tiny_qwenimage
    from mixgrpo.models.tiny_zimage import build_tiny_zimage
    from trainer.outputs import save_lora

    builders = {"Qwen-Image": build_tiny_qwenimage, "FLUX.2 [dev]": build_tiny_flux2,
                "FLUX.2 [klein]": lambda path: build_tiny_flux2(path, "klein"),
                # ComfyUI's Z-Image derives its time-embedding width (min(dim, 1024)) and its MLP width (rounded to
                # 256) otherwise than diffusers below the released sizes: 1152 wide is the smallest where both agree
                "Z-Image": lambda path: build_tiny_zimage(path, TinyConfig(hidden=1152, heads=6))}
    builders[family](root / "model")
    model = load_flow_model(root / "model")
    params = model.add_lora(rank=4)
    generator = torch.Generator().manual_seed(1)
    for p in params:
        p.data = torch.randn(p.shape, generator=generator) * 0.3
    save_lora(model, root / "lora", rank=4, alpha=4.0)
    return root / "model", root / "lora"


SCRIPT = """
import json, torch
import nodes as comfy_nodes
from comfy_extras import nodes_custom_sampler as cs
from mixgrpo_pack.nodes.loaders import LoadMixGRPOModel
from mixgrpo_pack.nodes.sampling import MixGRPOSampler
from mixgrpo.algorithm.denoiser_sampling import WindowOptions, plan_for_sigmas
from mixgrpo.algorithm.rollout import mixed_rollout
from mixgrpo.models import load_flow_model
from mixgrpo.models.lora_merge import load_and_merge

FOLDER, LORA, PROMPT, SHAPE = {folder!r}, {lora!r}, {prompt!r}, {shape!r}
noise = cs.RandomNoise.execute(7).args[0]
latent = {{"samples": torch.zeros(1, *SHAPE)}}
ode = MixGRPOSampler.execute(window_by="start step", window_start=0, window_percent=0.0, window_size=0, eta=0.7,
                             sde_type="flow", solver="euler", flash_compression=1.0).args[0]

def comfy_image(lora):
    model, clip, vae = LoadMixGRPOModel.execute(FOLDER, "none", 0.7, lora_path=lora).args
    cond = comfy_nodes.CLIPTextEncode().encode(clip, PROMPT)[0]
    sigmas = cs.BasicScheduler.execute(model, "simple", 6, 1.0).args[0]
    samples = cs.SamplerCustomAdvanced.execute(noise, cs.BasicGuider.execute(model, cond).args[0], ode, sigmas,
                                               latent).args[0]
    return comfy_nodes.VAEDecode().decode(vae, samples)[0].permute(0, 3, 1, 2), sigmas

tuned, sigmas = comfy_image(LORA)
base, _ = comfy_image("")
adapter = load_flow_model(FOLDER)
adapter.transformer.load_state_dict(load_and_merge(adapter.transformer.state_dict(), LORA, 0.7, adapter))
x = noise.generate_noise(latent).float()
x = x[:, :, 0] if x.dim() == 5 else x  # Qwen-Image's ComfyUI latents carry a frame axis
core = mixed_rollout(adapter.velocity, x, plan_for_sigmas(sigmas, WindowOptions(size=0)),
                     adapter.encode_prompts([PROMPT])).samples
own = adapter.decode(core)
print(json.dumps({{"tuned_vs_adapter": (tuned - own).abs().max().item(), "tuned_vs_base": (tuned - base).abs().max().item(),
                  "shape": list(tuned.shape)}}))
"""

#: each family's empty latent in ComfyUI's layout for 64² images
SHAPES = {"Qwen-Image": (16, 1, 8, 8), "Z-Image": (16, 8, 8), "FLUX.2 [dev]": (128, 4, 4), "FLUX.2 [klein]": (128, 4, 4)}


@pytest.mark.parametrize("family", list(SHAPES))
def test_the_loader_with_a_lora_samples_what_the_adapter_samples(family, tmp_path):
    folder, lora = folder_with_lora(family, tmp_path)
    result = run_in_comfyui(import_pack_code(REPO) + SCRIPT.format(folder=str(folder), lora=str(lora), prompt=PROMPT,
                                                                   shape=SHAPES[family]))
    assert result.returncode == 0, result.stderr[-4000:]
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert r["shape"] == [1, 3, 64, 64]
    assert r["tuned_vs_base"] > 1e-3, r  # the LoRA at 0.7 changes the image
    assert r["tuned_vs_adapter"] <= 1e-4, r

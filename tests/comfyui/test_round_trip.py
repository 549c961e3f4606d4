"""Trainer → ComfyUI: a run's LoRA, loaded by Load MixGRPO Model, samples what the trainer samples
(stock CFGGuider at the model's guidance scale, as the trainer rolls out)."""

import json
from pathlib import Path

import pytest

from comfy_setup import import_pack_code, run_in_comfyui, short_trainer_run

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """Three iterations at a high learning rate, so the LoRA visibly changes the image."""
    return short_trainer_run(tmp_path_factory.mktemp("runs"), 2, "--iterations", "3", "--steps", "8",
                             "--group-size", "4", "--micro-batch", "8", "--learning-rate", "3e-3")


def test_run_lora_in_comfyui_equals_the_trainers_own_ode_sample(run_folder):
    code = import_pack_code(REPO) + f"""
import json, torch
import nodes as comfy_nodes
from comfy_extras import nodes_custom_sampler as cs, nodes_sd3
from mixgrpo_pack.nodes.loaders import LoadMixGRPOModel, EMBEDDED
from mixgrpo.evaluation import sample_images
from mixgrpo.models import load_flow_model
from mixgrpo.models.embedded import EMBEDDED_DIR, read_settings
from trainer.outputs import load_lora_into

PROMPT, SEED = "a red circle above a blue square", 11
CFG = read_settings(EMBEDDED_DIR).get("cfg_scale", 1.0)  # the trainer's default guidance: the model's own

def comfy_sample(lora_path):
    model, clip, vae = LoadMixGRPOModel.execute(EMBEDDED, "none", 1.0, lora_path=lora_path).args
    cond = comfy_nodes.CLIPTextEncode().encode(clip, PROMPT)[0]
    negative = comfy_nodes.CLIPTextEncode().encode(clip, "")[0]
    latent = nodes_sd3.EmptySD3LatentImage.execute(128, 128, 1).args[0]
    sigmas = cs.BasicScheduler.execute(model, "simple", 25, 1.0).args[0]
    sampler = cs.KSamplerSelect.execute("euler").args[0]
    out = cs.SamplerCustomAdvanced.execute(cs.RandomNoise.execute(SEED).args[0],
                                           cs.CFGGuider.execute(model, cond, negative, CFG).args[0], sampler, sigmas, latent).args[0]
    return comfy_nodes.VAEDecode().decode(vae, out)[0].permute(0, 3, 1, 2)

tuned, base = comfy_sample({str(run_folder)!r}), comfy_sample("")
trainer_model = load_flow_model(EMBEDDED_DIR)
load_lora_into(trainer_model, __import__("pathlib").Path({str(run_folder)!r}) / "lora")
own = sample_images(trainer_model, [PROMPT], [SEED], steps=25, shift=3.0, resolution=128)[0]
print(json.dumps({{"tuned_vs_trainer": (tuned - own).abs().max().item(), "tuned_vs_base": (tuned - base).abs().max().item()}}))
"""
    result = run_in_comfyui(code)
    assert result.returncode == 0, result.stderr[-4000:]
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert r["tuned_vs_base"] > 1e-3, r   # the LoRA changes the image
    assert r["tuned_vs_trainer"] <= 1e-4, r

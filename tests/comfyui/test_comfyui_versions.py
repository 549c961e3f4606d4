"""What the pack does where ComfyUI's releases after 0.3.75 differ, each branch driven in the real ComfyUI 0.3.75 by a
stand-in of the newer shape: a Flux config dataclass with a new required field, ``CoreModelPatcher``, a model
sampling with a noise scale, a CONST subclass that is not a noise-to-image flow, a missing attribute."""

import json
from pathlib import Path

import pytest

from comfy_setup import import_pack_code, run_in_comfyui

pytestmark = pytest.mark.comfyui
REPO = Path(__file__).resolve().parents[2]

PRELUDE = import_pack_code(REPO) + """
import dataclasses, json, torch
import comfy.ldm.flux.model, comfy.model_detection, comfy.model_patcher, comfy.model_sampling, comfy.samplers
from comfy_extras import nodes_custom_sampler as cs, nodes_sd3
import nodes as comfy_nodes
from mixgrpo_pack.nodes.loaders import EMBEDDED, load_pipeline_for_comfy
from mixgrpo_pack.nodes.sampling import MixGRPOSampler
from mixgrpo_pack.nodes._api import flow_shift

def error_of(call):
    try:
        call()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None

def sample(model, clip, window_size):
    cond = comfy_nodes.CLIPTextEncode().encode(clip, "a red circle")[0]
    sampler = MixGRPOSampler.execute(window_by="start step", window_start=0, window_percent=0.0,
                                     window_size=window_size, eta=0.7, sde_type="flow", solver="euler",
                                     flash_compression=1.0).args[0]
    latent = nodes_sd3.EmptySD3LatentImage.execute(128, 128, 1).args[0]
    sigmas = cs.BasicScheduler.execute(model, "simple", 4, 1.0).args[0]
    return cs.SamplerCustomAdvanced.execute(cs.RandomNoise.execute(3).args[0], cs.BasicGuider.execute(model, cond).args[0],
                                            sampler, sigmas, latent).args[0]["samples"]
"""


def run(code: str) -> dict:
    result = run_in_comfyui(PRELUDE + code)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_flux_config_follows_the_installed_comfyuis_fields():
    """A newer FluxParams with a required ``txt_ids_dims``: the loader's config comes from ComfyUI's own detection,
    so it carries the field the installed version fills; where nothing fills it, one error names the version and
    the field."""
    r = run("""
old = comfy.ldm.flux.model.FluxParams
fields = [(f.name, f.type) for f in dataclasses.fields(old) if f.default is dataclasses.MISSING]
fields += [("txt_ids_dims", list)]
fields += [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(old)
           if f.default is not dataclasses.MISSING]
comfy.ldm.flux.model.FluxParams = dataclasses.make_dataclass("FluxParams", fields)
unfilled = error_of(lambda: load_pipeline_for_comfy(EMBEDDED, None, 1.0))
detect = comfy.model_detection.detect_unet_config
def newer_detect(state_dict, prefix, metadata=None):
    config = detect(state_dict, prefix, metadata)
    if config and config.get("image_model") == "flux":
        config["txt_ids_dims"] = []
    return config
comfy.model_detection.detect_unet_config = newer_detect
model, clip, vae = load_pipeline_for_comfy(EMBEDDED, None, 1.0)
samples = sample(model, clip, 0)
print(json.dumps({"unfilled": unfilled, "field": model.model.diffusion_model.params.txt_ids_dims,
                  "finite": bool(torch.isfinite(samples).all())}))
""")
    assert r["field"] == [] and r["finite"]
    assert r["unfilled"].startswith("ModelLoadError: ComfyUI 0.3.75's Flux network does not take the config the "
                                    "MixGRPO pack built for it:") and "txt_ids_dims" in r["unfilled"]


def test_the_model_patcher_is_core_model_patcher_where_comfyui_has_it():
    r = run("""
plain = type(load_pipeline_for_comfy(EMBEDDED, None, 1.0)[0]).__name__
comfy.model_patcher.CoreModelPatcher = type("CoreModelPatcher", (comfy.model_patcher.ModelPatcher,), {})
model, clip, vae = load_pipeline_for_comfy(EMBEDDED, None, 1.0)
print(json.dumps({"plain": plain, "core": type(model).__name__,
                  "finite": bool(torch.isfinite(sample(model, clip, 2)).all())}))
""")
    assert r == {"plain": "ModelPatcher", "core": "CoreModelPatcher", "finite": True}


def test_a_noise_scale_the_window_cannot_honour_is_a_node_error_and_the_ode_still_samples():
    r = run("""
model, clip, vae = load_pipeline_for_comfy(EMBEDDED, None, 1.0)
before = sample(model, clip, 0)
model.model.model_sampling.noise_scale = 8.0
window = error_of(lambda: sample(model, clip, 2))
ode = sample(model, clip, 0)
print(json.dumps({"window": window, "ode_unchanged": (ode - before).abs().max().item()}))
""")
    assert r["window"].startswith("NotAFlowModel: this model scales its noise by 8 (") and "window_size 0" in r["window"]
    assert r["ode_unchanged"] == 0.0


def test_only_noise_to_image_flows_pass_the_flow_check():
    r = run("""
class IMG_TO_IMG_FLOW(comfy.model_sampling.CONST):
    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image
flux = type("ModelSampling", (comfy.model_sampling.ModelSamplingFlux, comfy.model_sampling.CONST), {})()
image_to_image = type("ModelSampling", (comfy.model_sampling.ModelSamplingDiscreteFlow, IMG_TO_IMG_FLOW), {})()
print(json.dumps({"flux": flow_shift(flux), "image_to_image": error_of(lambda: flow_shift(image_to_image))}))
""")
    assert r["flux"] > 1
    assert r["image_to_image"] == (
        "NotAFlowModel: MixGRPO Sampler needs a flow-matching model that samples from noise (CONST model sampling: "
        "FLUX, SD3, …); this model uses IMG_TO_IMG_FLOW. Use a stock sampler for it, or load a FLUX / SD3 model.")


def test_a_comfyui_without_a_piece_the_pack_needs_names_the_version_and_the_piece():
    r = run("""
del comfy.samplers.KSAMPLER
print(json.dumps({"error": error_of(lambda: MixGRPOSampler.execute(
    window_by="start step", window_start=0, window_percent=0.0, window_size=2, eta=0.7, sde_type="flow",
    solver="euler", flash_compression=1.0))}))
""")
    assert r["error"] == ("MissingComfyPiece: ComfyUI 0.3.75 has no comfy.samplers.KSAMPLER, which the MixGRPO pack "
                          "needs (tested with ComfyUI 0.3.75; docs/comfyui.md lists the versions).")

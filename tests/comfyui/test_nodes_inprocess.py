"""The node pack inside a real ComfyUI 0.3.75 (imported in a subprocess on the CPU), with stock nodes around it."""

import json
from pathlib import Path

import pytest

from comfy_setup import import_pack_code, run_in_comfyui

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[2]

PRELUDE = import_pack_code(REPO) + """
import json, torch
import nodes as comfy_nodes
from comfy_extras import nodes_custom_sampler as cs, nodes_sd3
from mixgrpo_pack.nodes.loaders import LoadMixGRPOModel
from mixgrpo_pack.nodes.sampling import MixGRPOSampler, MixGRPOSchedule

def out(node_output):
    return node_output.args if hasattr(node_output, "args") else node_output

model, clip, vae = out(LoadMixGRPOModel.execute("embedded (shapes-flux-tiny)", "none", 1.0))
cond = comfy_nodes.CLIPTextEncode().encode(clip, "a red circle")[0]
latent = out(nodes_sd3.EmptySD3LatentImage.execute(128, 128, 1))[0]
sigmas = out(cs.BasicScheduler.execute(model, "simple", 12, 1.0))[0]
guider = out(cs.BasicGuider.execute(model, cond))[0]
noise = out(cs.RandomNoise.execute(123))[0]

def sample(sampler, guider=guider):
    return out(cs.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, latent))[0]["samples"]

def mixgrpo(**kw):
    args = dict(window_by="start step", window_start=0, window_percent=0.0, window_size=0, eta=0.7,
                sde_type="flow", solver="euler", flash_compression=1.0) | kw
    return out(MixGRPOSampler.execute(**args))[0]
"""


def run(code: str) -> dict:
    result = run_in_comfyui(PRELUDE + code)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_empty_window_equals_stock_euler_and_stock_nodes_work_downstream():
    r = run("""
stock = sample(out(cs.KSamplerSelect.execute("euler"))[0])
ours = sample(mixgrpo(window_size=0))
image = comfy_nodes.VAEDecode().decode(vae, {"samples": ours})[0]
schedule, info = out(MixGRPOSchedule.execute(25, 3.0, 0, 4, 0.4))[:2]
print(json.dumps({"diff": (stock - ours).abs().max().item(), "shape": list(image.shape),
                  "std": image.std().item(), "finite": bool(torch.isfinite(image).all()),
                  "sigmas": len(sigmas), "schedule_len": len(schedule), "info": info,
                  "shift": model.model.model_sampling.shift}))
""")
    assert r["diff"] <= 1e-5
    assert r["shape"] == [1, 128, 128, 3] and r["finite"] and r["std"] > 0.005  # not constant: a decoded image
    assert r["schedule_len"] < 26 and "NFE" in r["info"] and "SDE steps 0–3" in r["info"]


@pytest.mark.parametrize("guidance", ["none", "cfg"])
def test_window_with_noise_equals_core_rollout_on_the_diffusers_model(guidance):
    """Stock guiders around our sampler give the core's rollout: BasicGuider the unguided field, and
    CFGGuider with an empty negative prompt the adapter's classifier-free guidance at the same scale."""
    r = run("""
from mixgrpo.models import load_flow_model
from mixgrpo.algorithm.denoiser_sampling import WindowOptions, plan_for_sigmas
from mixgrpo.algorithm.rollout import mixed_rollout
from mixgrpo.models.embedded import EMBEDDED_DIR, read_settings
scale = %s
if scale != 1.0:
    negative = comfy_nodes.CLIPTextEncode().encode(clip, "")[0]
    guider = out(cs.CFGGuider.execute(model, cond, negative, scale))[0]
ours = sample(mixgrpo(window_start=2, window_size=4, eta=0.8), guider)
ode = sample(mixgrpo(window_size=0), guider)
adapter = load_flow_model(EMBEDDED_DIR, cfg_scale=scale)
plan = plan_for_sigmas(sigmas, WindowOptions(start=2, size=4, eta=0.8))
x = noise.generate_noise(latent)  # σ0 = 1: the initial x is the noise itself
vae_cfg = adapter.vae.config
core = mixed_rollout(adapter.velocity, x.float(), plan, adapter.encode_prompts(["a red circle"]),
                     generator=torch.Generator().manual_seed(123))
core_latent = core.samples / vae_cfg.scaling_factor + vae_cfg.shift_factor  # ComfyUI returns VAE-space latents
print(json.dumps({"diff": (ours - core_latent).abs().max().item(), "window_effect": (ours - ode).abs().max().item(),
                  "first_sigma": float(sigmas[0]), "scale": scale}))
""" % ("1.0" if guidance == "none" else "read_settings(EMBEDDED_DIR)['cfg_scale']"))
    assert r["first_sigma"] == 1.0
    assert r["window_effect"] > 1e-2
    assert r["diff"] <= 1e-4
    assert (r["scale"] == 1.0) == (guidance == "none")


def test_non_flow_model_and_bad_window_are_clear_errors():
    r = run("""
import comfy.model_sampling as ms
from mixgrpo_pack.nodes._api import NotAFlowModel, flow_shift
eps_model = type("EpsSampling", (ms.ModelSamplingDiscrete, ms.EPS), {})(None)
errors = {}
try:
    flow_shift(eps_model)
except NotAFlowModel as e:
    errors["non_flow"] = str(e)
try:
    sample(mixgrpo(window_start=10, window_size=4))
except Exception as e:
    errors["window"] = f"{type(e).__name__}: {e}"
print(json.dumps(errors))
""")
    assert "needs a flow-matching model" in r["non_flow"] and "EpsSampling" in r["non_flow"]
    assert "ScheduleError" in r["window"] and "12-step schedule" in r["window"]


def test_the_loader_names_the_models_it_builds_for_a_folder_of_another_model(tmp_path):
    from mixgrpo.models.tiny import build_tiny_sd3

    build_tiny_sd3(tmp_path / "sd3")
    r = run(f"""
from mixgrpo_pack.nodes.loaders import load_pipeline_for_comfy
try:
    load_pipeline_for_comfy({str(tmp_path / "sd3")!r}, None, 1.0)
    error = None
except Exception as e:
    error = f"{{type(e).__name__}}: {{e}}"
print(json.dumps({{"error": error}}))
""")
    assert r["error"] == (f"ModelLoadError: {tmp_path / 'sd3'} holds a SD3 / SD3.5 pipeline; Load MixGRPO Model builds "
                          "FLUX.1, Qwen-Image, Z-Image, FLUX.2 models. Load SD3 / SD3.5 with ComfyUI's stock loaders; the MixGRPO Sampler samples it.")


def test_a_registered_algorithm_and_window_strategy_reach_the_visualiser_node():
    code = import_pack_code(REPO) + """
import json
from mixgrpo import Algorithm, register_algorithm
from mixgrpo import WindowStrategy, register_strategy
register_algorithm(Algorithm("toy", "Toy-GRPO", solver="dpm2m", compression=0.5))
register_strategy(WindowStrategy("every_third", interval=lambda config, left: 3))
from mixgrpo_pack.nodes.visualise import SlidingWindowVisualiser
schema = SlidingWindowVisualiser.define_schema()
options = {i.id: i.options for i in schema.inputs if i.id in ("algorithm", "strategy")}
result = SlidingWindowVisualiser.execute("toy", 25, 3.0, 4, 6, "every_third", 5, 1, 60, 0)
schedule, windows = result.args
print(json.dumps({"options": options, "schedule": list(schedule.shape), "std": float(windows.std())}))
"""
    result = run_in_comfyui(code)
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["options"]["algorithm"][-1] == "toy" and out["options"]["strategy"][-1] == "every_third"
    assert out["schedule"][0] == 1 and out["std"] > 0.01

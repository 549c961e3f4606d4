"""The Z-Image adapter on a tiny random ``ZImagePipeline`` (built offline): its ODE rollout is the pipeline's own
sampling, with and without guidance; conditioning caches and batches; its LoRA names are ComfyUI's."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixgrpo import build_plan, mixed_rollout  # noqa: E402
from mixgrpo.models import load_flow_model  # noqa: E402
from masked_text import check_masked_rows_cache_and_batch  # noqa: E402

pytestmark = pytest.mark.models
PROMPTS = ["a red circle", "two blue squares above a green triangle"]


@pytest.fixture(scope="module")
def zimage_dir(tmp_path_factory):
    from mixgrpo.models.tiny_zimage import build_tiny_zimage

    path = tmp_path_factory.mktemp("zimage")
    build_tiny_zimage(path)
    return path


@pytest.mark.parametrize("guidance_scale, options", [(0.0, {}), (3.0, {}),
                                                     (3.0, {"cfg_normalization": 1.0, "cfg_truncation": 0.2})],
                         ids=["unguided", "guided", "normalised-and-truncated"])
def test_zimage_adapter_ode_rollout_equals_zimage_pipeline(zimage_dir, guidance_scale, options):
    """The pipeline's ``guidance_scale`` g is the adapter's ``cfg_scale`` 1 + g (Z-Image-Turbo: g = 0); its
    ``cfg_normalization`` and ``cfg_truncation`` are the adapter's options of those names."""
    from diffusers import ZImagePipeline

    model = load_flow_model(zimage_dir, cfg_scale=1 + guidance_scale, max_sequence_length=64, **options)
    assert type(model).family == "Z-Image" and model.sampling_shift(64, 64) == 3.0
    pipe = ZImagePipeline.from_pretrained(str(zimage_dir))
    steps, size = 4, 64
    noise = torch.randn(2, *model.latent_shape(size, size), generator=torch.Generator().manual_seed(0))
    ref = pipe(list(PROMPTS), height=size, width=size, num_inference_steps=steps, latents=noise.clone(),
               guidance_scale=guidance_scale, output_type="latent", max_sequence_length=64, **options).images
    plan = build_plan("mixgrpo", num_steps=steps, shift=3.0, window_size=0)
    assert torch.allclose(pipe.scheduler.sigmas.double(), torch.tensor(plan.sigmas, dtype=torch.float64), atol=1e-6)
    ours = mixed_rollout(model.velocity, noise, plan, model.encode_prompts(PROMPTS)).samples
    assert (ours - ref).abs().max() <= 1e-4

    images = pipe(list(PROMPTS), height=size, width=size, num_inference_steps=steps, latents=noise.clone(),
                  guidance_scale=guidance_scale, output_type="pt", max_sequence_length=64, **options).images
    assert (model.decode(ours) - images).abs().max() <= 1e-4


def test_cached_rows_of_any_length_batch_together_and_each_image_keeps_its_tokens(zimage_dir):
    check_masked_rows_cache_and_batch(load_flow_model(zimage_dir, max_sequence_length=64), PROMPTS)


def test_the_lora_trains_its_attention_and_takes_comfyuis_names(zimage_dir):
    model = load_flow_model(zimage_dir, max_sequence_length=64)
    params = model.add_lora(rank=4)
    cond = model.encode_prompts(PROMPTS[:1])
    model.velocity(torch.randn(1, *model.latent_shape(64, 64)), torch.tensor([0.5]), cond).square().mean().backward()
    assert params and all(p.grad is not None for p in params)
    blocks = sum(len(getattr(model.transformer, name)) for name in model.block_lists)
    assert len(model.shard_units()) == blocks == 4  # one noise refiner, one context refiner, two joint layers
    assert model.comfyui_lora_key("layers.0.attention.to_q.lora_A.weight") == \
        "diffusion_model.layers.0.attention.to_q.lora_A.weight"


def test_a_folder_records_its_guidance_options(zimage_dir, tmp_path):
    import json
    import shutil

    folder = tmp_path / "recorded"
    shutil.copytree(zimage_dir, folder)
    (folder / "mixgrpo.json").write_text(json.dumps({"cfg_scale": 5.0, "cfg_normalization": 1.0,
                                                     "cfg_truncation": 0.9}))
    model = load_flow_model(folder)
    assert (model.cfg_scale, model.cfg_normalization, model.cfg_truncation) == (5.0, 1.0, 0.9)
    assert load_flow_model(folder, cfg_normalization=0.0).cfg_normalization == 0.0  # what the caller says wins

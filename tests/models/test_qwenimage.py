"""The Qwen-Image adapter on a tiny random ``QwenImagePipeline`` (built offline): its ODE rollout is the pipeline's
own sampling, with and without true CFG; conditioning caches and batches; its latent codec inverts; its LoRA names
are ComfyUI's."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixgrpo import build_plan, mixed_rollout  # noqa: E402
from mixgrpo.models import load_flow_model  # noqa: E402
from mixgrpo.models.flux import pack_latents, unpack_latents  # noqa: E402
from masked_text import check_masked_rows_cache_and_batch  # noqa: E402

pytestmark = pytest.mark.models
PROMPTS = ["a red circle", "two blue squares above a green triangle"]


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    from mixgrpo.models.tiny_qwenimage import build_tiny_qwenimage

    path = tmp_path_factory.mktemp("qwenimage")
    build_tiny_qwenimage(path)
    return path


@pytest.mark.parametrize("true_cfg_scale", [1.0, 4.0], ids=["unguided", "true-cfg"])
def test_qwenimage_adapter_ode_rollout_equals_qwenimage_pipeline(qwen_dir, true_cfg_scale):
    """The pipeline's ``true_cfg_scale`` with a negative prompt is the adapter's ``cfg_scale`` and ``negative_prompt``.
    The σ grid is the same e^μ shift on both sides (the pipeline's terminal stretch off: docs/models.md)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

    model = load_flow_model(qwen_dir, cfg_scale=true_cfg_scale, negative_prompt=" ", max_sequence_length=64)
    assert type(model).family == "Qwen-Image"
    pipe = QwenImagePipeline.from_pretrained(str(qwen_dir))
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift_terminal=None)
    steps, size = 4, 64
    noise = torch.randn(2, *model.latent_shape(size, size), generator=torch.Generator().manual_seed(0))
    options = dict(height=size, width=size, num_inference_steps=steps, max_sequence_length=64,
                   true_cfg_scale=true_cfg_scale, negative_prompt=" " if true_cfg_scale > 1 else None)
    ref = pipe(list(PROMPTS), latents=pack_latents(noise), output_type="latent", **options).images
    plan = build_plan("mixgrpo", num_steps=steps, shift=model.sampling_shift(size, size), window_size=0)
    assert torch.allclose(pipe.scheduler.sigmas.double(), torch.tensor(plan.sigmas, dtype=torch.float64), atol=1e-6)
    ours = mixed_rollout(model.velocity, noise, plan, model.encode_prompts(PROMPTS)).samples
    assert (ours - unpack_latents(ref, *noise.shape[-2:])).abs().max() <= 1e-4

    images = pipe(list(PROMPTS), latents=pack_latents(noise), output_type="pt", **options).images
    assert (model.decode(ours) - images).abs().max() <= 1e-4


def test_the_shift_follows_the_image_size_as_the_pipeline_computes_it(qwen_dir):
    """μ runs from 0.5 at 256 image tokens (256²) to 0.9 at 8192; 64² has 16 tokens (below the base: μ < 0.5)."""
    import math

    model = load_flow_model(qwen_dir)
    assert math.isclose(model.sampling_shift(256, 256), math.exp(0.5))
    assert math.isclose(model.sampling_shift(1024, 2048), math.exp(0.9))
    assert model.sampling_shift(1328, 1328) > model.sampling_shift(1024, 1024) > model.sampling_shift(512, 512)


def test_cached_rows_batch_together_and_the_latent_codec_inverts(qwen_dir):
    model = load_flow_model(qwen_dir, max_sequence_length=64)
    check_masked_rows_cache_and_batch(model, PROMPTS)
    x = torch.randn(2, *model.latent_shape(64, 64))
    images = model.decode(x)
    assert images.shape == (2, 3, 64, 64)
    # the per-channel normalisations of encode and decode cancel: decoding an encoding is the VAE's own round trip
    with torch.no_grad():
        frames = (images * 2 - 1).unsqueeze(2)
        vae_round_trip = (model.vae.decode(model.vae.encode(frames).latent_dist.mode()).sample[:, :, 0] / 2 + 0.5)
    assert (model.decode(model.encode(images)) - vae_round_trip.clamp(0, 1)).abs().max() <= 1e-5


def test_the_lora_trains_its_attention_and_takes_comfyuis_names(qwen_dir):
    model = load_flow_model(qwen_dir, max_sequence_length=64)
    params = model.add_lora(rank=4)
    cond = model.encode_prompts(PROMPTS[:1])
    model.velocity(torch.randn(1, *model.latent_shape(64, 64)), torch.tensor([0.5]), cond).square().mean().backward()
    assert params and all(p.grad is not None for p in params)
    assert len(model.shard_units()) == len(model.transformer.transformer_blocks) == 2
    assert model.comfyui_lora_key("transformer_blocks.0.attn.to_q.lora_A.weight") == \
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"

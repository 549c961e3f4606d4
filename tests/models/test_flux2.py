"""The FLUX.2 adapter on tiny random ``Flux2Pipeline`` ([dev]) and ``Flux2KleinPipeline`` ([klein]) folders (built
offline): its ODE rollout is each pipeline's own sampling with the guidance each uses; the σ grid follows the step
count; a step-distilled [klein] refuses guidance; its LoRA covers the single blocks under ComfyUI's names."""

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixgrpo import build_plan, mixed_rollout  # noqa: E402
from mixgrpo.errors import ModelLoadError  # noqa: E402
from mixgrpo.models import load_flow_model  # noqa: E402

pytestmark = pytest.mark.models
PROMPTS = ["a red circle", "two blue squares above a green triangle"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from mixgrpo.models.tiny_flux2 import build_tiny_flux2

    root = tmp_path_factory.mktemp("flux2")
    for variant in ("dev", "klein"):
        build_tiny_flux2(root / variant, variant)
    build_tiny_flux2(root / "klein-distilled", "klein", distilled=True)
    return root


@pytest.mark.parametrize("variant, cfg_scale", [("dev", 1.0), ("klein", 1.0), ("klein", 4.0)],
                         ids=["dev-guidance-embedding", "klein-unguided", "klein-cfg"])
def test_flux2_adapter_ode_rollout_equals_the_pipeline(folders, variant, cfg_scale):
    """[dev]: the pipeline's ``guidance_scale`` 4 is the adapter's ``guidance`` (its default); [klein] base: the
    pipeline's ``guidance_scale`` is the adapter's ``cfg_scale`` (negative prompt: the empty one)."""
    import diffusers

    model = load_flow_model(folders / variant, cfg_scale=cfg_scale, max_sequence_length=64)
    assert type(model).family == "FLUX.2" and model.guidance == 4.0
    pipe = getattr(diffusers, "Flux2Pipeline" if variant == "dev" else "Flux2KleinPipeline").from_pretrained(
        str(folders / variant))
    steps, size = 4, 64
    noise = torch.randn(2, *model.latent_shape(size, size), generator=torch.Generator().manual_seed(0))
    assert noise.shape[1:] == (128, 4, 4)  # 2×2 patches of the 32-channel latent
    options = dict(height=size, width=size, num_inference_steps=steps, max_sequence_length=64,
                   guidance_scale=4.0 if variant == "dev" else cfg_scale)
    ref = pipe(prompt=list(PROMPTS), latents=noise.clone(), output_type="latent", **options).images
    plan = build_plan("mixgrpo", num_steps=steps, shift=model.sampling_shift(size, size, steps), window_size=0)
    assert torch.allclose(pipe.scheduler.sigmas.double(), torch.tensor(plan.sigmas, dtype=torch.float64), atol=1e-6)
    ours = mixed_rollout(model.velocity, noise, plan, model.encode_prompts(PROMPTS)).samples
    # [dev] hands back its packed tokens; [klein] the VAE's own latents (de-normalised, unpatchified)
    ours_like_ref = ours.flatten(2).transpose(1, 2) if variant == "dev" else model.vae_latents(ours)
    assert (ours_like_ref - ref).abs().max() <= 1e-4

    images = pipe(prompt=list(PROMPTS), latents=noise.clone(), output_type="pt", **options).images
    assert (model.decode(ours) - images).abs().max() <= 1e-4


def test_the_shift_follows_the_image_and_the_step_count_as_the_pipeline_computes_it(folders):
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

    model = load_flow_model(folders / "dev")
    for size, steps in [(512, 28), (1024, 50), (1024, 10), (2048, 50)]:
        tokens = (size // 16) ** 2
        assert math.isclose(model.sampling_shift(size, size, steps), math.exp(compute_empirical_mu(tokens, steps)),
                            rel_tol=1e-6)
    assert model.sampling_shift(1024, 1024, 10) != model.sampling_shift(1024, 1024, 50)


def test_a_step_distilled_klein_refuses_guidance_and_samples_without(folders):
    with pytest.raises(ModelLoadError, match="step-distilled.*cfg_scale 1.*base"):
        load_flow_model(folders / "klein-distilled", cfg_scale=4.0)
    assert load_flow_model(folders / "klein-distilled").cfg_scale == 1.0


def test_the_encode_decode_pair_and_the_lora_with_comfyuis_names(folders):
    model = load_flow_model(folders / "klein", max_sequence_length=64)
    images = model.decode(torch.randn(1, *model.latent_shape(64, 64)))
    with torch.no_grad():  # the batch-norm normalisations cancel: decoding an encoding is the VAE's own round trip
        vae_round_trip = model.vae.decode(model.vae.encode(images * 2 - 1).latent_dist.mode()).sample / 2 + 0.5
    assert (model.decode(model.encode(images)) - vae_round_trip.clamp(0, 1)).abs().max() <= 1e-5

    params = model.add_lora(rank=4)
    cond = model.encode_prompts(PROMPTS[:1])
    model.velocity(torch.randn(1, *model.latent_shape(64, 64)), torch.tensor([0.5]), cond).square().mean().backward()
    assert params and all(p.grad is not None for p in params)
    adapted = {name.rsplit(".lora_", 1)[0] for name, _ in model.transformer.named_parameters() if "lora_A" in name}
    assert "single_transformer_blocks.0.attn.to_qkv_mlp_proj" in adapted
    assert "transformer_blocks.0.attn.to_q" in adapted
    assert model.comfyui_lora_key("single_transformer_blocks.3.attn.to_qkv_mlp_proj.lora_B.weight") == \
        "diffusion_model.single_blocks.3.linear1.lora_B.weight"
    assert model.comfyui_lora_key("transformer_blocks.0.attn.to_q.lora_A.weight") == \
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"

"""Model adapters on tiny random FLUX and SD3 pipelines written to temporary folders (offline)."""

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixgrpo import (ModelLoadError, build_plan, flux_sigma_schedule, mixed_rollout,  # noqa: E402
                     plan_from_sigmas, uniform_times)
from mixgrpo.models import load_flow_model  # noqa: E402
from mixgrpo.models.flux import pack_latents, unpack_latents  # noqa: E402
from mixgrpo.models.tiny import build_tiny_flux, build_tiny_sd3  # noqa: E402

pytestmark = pytest.mark.models

PROMPTS = ["a red circle", "two blue squares above a green triangle"]


@pytest.fixture(scope="module")
def flux_dir(tiny_flux):
    return tiny_flux


@pytest.fixture(scope="module")
def sd3_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_sd3")
    build_tiny_sd3(path)
    return path


def test_pack_unpack_round_trip():
    x = torch.randn(2, 16, 8, 6)
    tokens = pack_latents(x)
    assert tokens.shape == (2, 12, 64)
    assert torch.equal(tokens[0, 0, :4], x[0, 0, :2, :2].reshape(-1))  # one token = one 2×2 patch
    assert torch.equal(unpack_latents(tokens, 8, 6), x)


def test_flux_adapter_ode_rollout_equals_flux_pipeline(flux_dir):
    """Same σ grid, noise and conditioning: our rollout (empty window) ≡ FluxPipeline + its scheduler."""
    from diffusers import FluxPipeline

    model = load_flow_model(flux_dir)
    pipe = FluxPipeline.from_pretrained(str(flux_dir))
    steps, size = 6, 128
    noise = torch.randn(2, *model.latent_shape(size, size), generator=torch.Generator().manual_seed(0))
    ref = pipe(PROMPTS, height=size, width=size, num_inference_steps=steps, latents=pack_latents(noise),
               output_type="latent", max_sequence_length=model.max_sequence_length).images
    assert torch.allclose(pipe.scheduler.sigmas.double(), torch.tensor(flux_sigma_schedule(steps, size, size), dtype=torch.float64),
                          atol=1e-6)

    plan = plan_from_sigmas(flux_sigma_schedule(steps, size, size), range(0))
    cond = model.encode_prompts(PROMPTS)
    ours = mixed_rollout(model.velocity, noise, plan, cond).samples
    assert (ours - unpack_latents(ref, 16, 16)).abs().max() <= 1e-4

    images = pipe(PROMPTS, height=size, width=size, num_inference_steps=steps, latents=pack_latents(noise),
                  output_type="pt", max_sequence_length=model.max_sequence_length).images
    decoded = model.decode(ours)
    assert decoded.shape == (2, 3, size, size) and 0 <= decoded.min() and decoded.max() <= 1
    assert (decoded - images).abs().max() <= 1e-4


@pytest.mark.parametrize("cfg_scale", [1.0, 4.5])
def test_sd3_adapter_ode_rollout_equals_sd3_pipeline(sd3_dir, cfg_scale):
    """Unguided, and with classifier-free guidance: the pipeline's ``guidance_scale`` and its default
    empty negative prompt are the adapter's ``cfg_scale``."""
    from diffusers import StableDiffusion3Pipeline

    model = load_flow_model(sd3_dir, cfg_scale=cfg_scale)
    pipe = StableDiffusion3Pipeline.from_pretrained(str(sd3_dir))
    steps = 4
    noise = torch.randn(2, *model.latent_shape(128, 128), generator=torch.Generator().manual_seed(1))
    # SD3's scheduler spaces its default grid down to σ_min, not 1/T: hand it our unshifted times
    ref = pipe(PROMPTS, height=128, width=128, num_inference_steps=steps, sigmas=uniform_times(steps)[:-1],
               latents=noise, guidance_scale=cfg_scale, output_type="latent",
               max_sequence_length=model.max_sequence_length).images
    plan = build_plan("mixgrpo", num_steps=steps, shift=3.0, window_size=0)
    assert torch.allclose(pipe.scheduler.sigmas.double(), torch.tensor(plan.sigmas, dtype=torch.float64), atol=1e-6)
    ours = mixed_rollout(model.velocity, noise, plan, model.encode_prompts(PROMPTS)).samples
    assert (ours - ref).abs().max() <= 1e-4


def test_mixgrpo_rollout_through_the_flux_adapter(flux_dir):
    model = load_flow_model(flux_dir)
    cond = model.encode_prompts(PROMPTS)
    plan = build_plan("mixgrpo", num_steps=6, shift=3.0, window_start=1, window_size=2)
    out = mixed_rollout(model.velocity, torch.randn(2, 16, 8, 8), plan, cond, group_size=3,
                        generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (6, 16, 8, 8) and len(out.transitions) == 2
    assert out.network_evals == 2 * 1 + 6 * 5  # one trunk step per group, then 6 rows
    model.release_text_encoders()  # cached conditioning keeps working without them
    assert model.pipe.text_encoder is None and model.pipe.text_encoder_2 is None
    again = mixed_rollout(model.velocity, torch.randn(2, 16, 8, 8), plan, cond, group_size=3,
                          generator=torch.Generator().manual_seed(0))
    assert again.samples.shape == (6, 16, 8, 8)


def test_lora_trains_alone_and_reference_switches_it_off(flux_dir):
    model = load_flow_model(flux_dir)
    cond = model.encode_prompts(PROMPTS[:1])
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor([0.7])
    with torch.no_grad():
        base = model.velocity(x, sigma, cond)
    params = model.add_lora(rank=4)
    assert params and all("lora" in n for n, p in model.transformer.named_parameters() if p.requires_grad)
    with torch.no_grad():
        assert torch.allclose(model.velocity(x, sigma, cond), base, atol=1e-6)  # LoRA B starts at 0
        for p in params:
            p.add_(0.05)
        tuned = model.velocity(x, sigma, cond)
        with model.reference():
            reference = model.velocity(x, sigma, cond)
        again = model.velocity(x, sigma, cond)
    assert (tuned - base).abs().max() > 1e-3
    assert torch.allclose(reference, base, atol=1e-6)
    assert torch.equal(again, tuned)


def test_classifier_free_guidance_combines_the_two_branches(flux_dir):
    """v = v(∅) + s·(v(c) − v(∅)) from one doubled batch; the negative rows travel in the conditioning."""
    guided, plain = load_flow_model(flux_dir, cfg_scale=3.0), load_flow_model(flux_dir)
    cond = guided.encode_prompts(PROMPTS)
    assert cond["negative_prompt_embeds"].shape == cond["prompt_embeds"].shape
    assert set(plain.encode_prompts(PROMPTS)) == {"prompt_embeds", "pooled_prompt_embeds"}
    x, sigma = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(3)), torch.tensor([0.9, 0.4])
    empty = plain.encode_text([""] * 2)
    with torch.no_grad():
        v_c, v_u = plain.model_velocity(x, sigma, plain.encode_text(PROMPTS)), plain.model_velocity(x, sigma, empty)
        v = guided.velocity(x, sigma, cond)
        assert (v - v_u).abs().max() > 1e-3  # the guidance changes the field
        assert torch.allclose(v, v_u + 3.0 * (v_c - v_u), atol=1e-5)
        assert torch.allclose(guided.velocity(x, torch.tensor(0.4), cond)[1], v[1], atol=1e-5)  # a scalar σ
        assert torch.equal(plain.velocity(x, sigma, plain.encode_prompts(PROMPTS)), v_c)
    with pytest.raises(ValueError, match="no negative prompt"):
        guided.velocity(x, sigma, plain.encode_prompts(PROMPTS))
    with pytest.raises(ValueError, match="cfg_scale must be a positive number"):
        load_flow_model(flux_dir, cfg_scale=0.0)


def test_loader_takes_the_guidance_scale_a_model_records(tmp_path):
    build_tiny_flux(tmp_path)
    (tmp_path / "mixgrpo.json").write_text(json.dumps({"cfg_scale": 2.5}))
    assert load_flow_model(tmp_path).cfg_scale == 2.5
    assert load_flow_model(tmp_path, cfg_scale=1.0).cfg_scale == 1.0  # the caller's choice wins


def test_quantised_timesteps_are_floor_1000_sigma(flux_dir):
    model = load_flow_model(flux_dir, quantize_timesteps=True)
    assert model.model_timestep(torch.tensor([0.98765, 0.5])).tolist() == pytest.approx([0.987, 0.5])
    levels = torch.arange(1001, dtype=torch.float32) / 1000  # every level in float32 stays on itself
    assert torch.equal(torch.round(model.model_timestep(levels) * 1000), torch.arange(1001, dtype=torch.float32))


def test_clear_errors(tmp_path, flux_dir):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_flow_model(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_flow_model(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelLoadError, match="not a supported flow model"):
        load_flow_model(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelLoadError, match="incomplete: missing component"):
        load_flow_model(tmp_path)
    with pytest.raises(ModelLoadError, match="divisible by 16"):
        load_flow_model(flux_dir).latent_shape(120, 128)


def test_offline_tokenizers_keep_world_words_whole():
    from mixgrpo.models.tiny import clip_tokenizer, t5_tokenizer

    text = "three red circles left of an orange triangle"
    clip, t5 = clip_tokenizer(), t5_tokenizer()
    assert clip.convert_ids_to_tokens(clip(text).input_ids)[1:-1] == [w + "</w>" for w in text.split()]
    assert t5.convert_ids_to_tokens(t5(text).input_ids)[:-1] == ["▁" + w for w in text.split()]
    assert len(clip("zebra").input_ids) == 2 + 5  # unknown words fall back to characters


def test_each_model_brings_its_own_sigma_grid_shift(flux_dir, sd3_dir):
    import math

    from mixgrpo.algorithm.schedule import flux_mu
    from mixgrpo.models.embedded import EMBEDDED_DIR

    assert load_flow_model(EMBEDDED_DIR).sampling_shift(128, 128) == 3.0  # recorded in its mixgrpo.json
    flux = load_flow_model(flux_dir)  # FLUX's scheduler shifts dynamically: e^μ of the image's tokens
    assert flux.sampling_shift(128, 128) == pytest.approx(math.exp(flux_mu(64)))
    assert flux.sampling_shift(1024, 1024) == pytest.approx(math.exp(1.15))  # 4096 tokens: max_shift
    assert load_flow_model(sd3_dir).sampling_shift(1024, 1024) == 3.0  # SD3's scheduler: a fixed shift


def test_an_unsupported_pipeline_names_every_supported_one(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(ModelLoadError) as error:
        load_flow_model(tmp_path)
    assert "FluxPipeline (FLUX.1)" in str(error.value) and "StableDiffusion3Pipeline (SD3 / SD3.5)" in str(error.value)

"""The lean load path, on a tiny FLUX folder on the CPU: what loads in which dtype, the prompt cache, decode chunks.

On a GPU under bf16 the trainer loads with ``dtype=bf16``; a CPU computes bf16 too, so the same
code path is checked here (tests/gpu runs it on CUDA).
"""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixgrpo import ModelLoadError  # noqa: E402
from mixgrpo.models import load_flow_model  # noqa: E402
from mixgrpo.models.gpu import autocast_dtype, compute_dtype  # noqa: E402

pytestmark = pytest.mark.models

PROMPTS = ["a red circle", "two blue squares above a green triangle", "a yellow triangle"]


@pytest.fixture(scope="module")
def flux_dir(tiny_flux):
    return tiny_flux


def test_compute_dtype_is_float32_off_cuda_and_the_mixed_precision_on_cuda():
    assert compute_dtype("bf16", "cpu") == torch.float32 and autocast_dtype("bf16", "cpu") is None
    assert compute_dtype("bf16", "cuda") == torch.bfloat16 and autocast_dtype("bf16", "cuda:1") == torch.bfloat16
    assert compute_dtype("fp16", "cuda") == torch.float16
    assert compute_dtype("no", "cuda") == torch.float32 and autocast_dtype("no", "cuda") is None


def test_frozen_parts_load_in_the_compute_dtype_and_trained_weights_stay_float32(flux_dir):
    lora = load_flow_model(flux_dir, dtype=torch.bfloat16)
    assert {lora.transformer.dtype, lora.vae.dtype, lora.pipe.text_encoder.dtype,
            lora.pipe.text_encoder_2.dtype} == {torch.bfloat16}
    params = lora.add_lora(rank=4)
    assert params and {p.dtype for p in params} == {torch.float32}  # the LoRA's master weights
    frozen = [p for p in lora.transformer.parameters() if not p.requires_grad]
    assert {p.dtype for p in frozen} == {torch.bfloat16}

    full = load_flow_model(flux_dir, dtype=torch.bfloat16, transformer_dtype=torch.float32)
    assert full.transformer.dtype == torch.float32 and full.vae.dtype == torch.bfloat16
    reference = load_flow_model(flux_dir)  # the transformer's weights read in float32 straight from the files
    for (name, a), (_, b) in zip(full.transformer.state_dict().items(), reference.transformer.state_dict().items()):
        assert torch.equal(a, b), name
    full.keep_reference_copy(torch.bfloat16)  # the KL reference is frozen: compute dtype
    assert next(full.reference_network.parameters()).dtype == torch.bfloat16


def test_cached_prompts_equal_encoded_ones_and_the_encoders_leave(flux_dir):
    model = load_flow_model(flux_dir, cfg_scale=2.0)  # guided: rows carry the negative prompt too
    direct = model.encode_prompts(PROMPTS)
    size = model.cache_prompts(PROMPTS + PROMPTS[:1], batch=2)
    assert model.text_encoders_released and model.pipe.text_encoder is None
    assert set(model.prompt_cache) == set(PROMPTS)
    assert size == sum(t.numel() * t.element_size() for t in direct.values())
    served = model.encode_prompts([PROMPTS[2], PROMPTS[0]])
    assert served.keys() == direct.keys()
    for key in direct:
        assert served[key].device.type == "cpu" and served[key].shape[0] == 2
        torch.testing.assert_close(served[key], direct[key][[2, 0]], atol=1e-6, rtol=0)
    with pytest.raises(ModelLoadError, match="was not among the prompts encoded"):
        model.encode_prompts(["an unseen prompt"])


def test_a_cpu_decodes_eight_latents_at_a_time(flux_dir):
    model = load_flow_model(flux_dir)
    latents = torch.randn(10, *model.latent_shape(64, 64))
    assert model.decode_batch(latents) == 8
    assert torch.equal(model.decode(latents), torch.cat([model.decode(latents[:8]), model.decode(latents[8:])]))


def test_an_evaluation_samples_as_many_images_at_once_as_the_free_memory_holds(flux_dir):
    model = load_flow_model(flux_dir)
    assert model.sampling_batch(128, 128) == 64  # a CPU: the default batch
    config = model.transformer.config
    tokens = (128 // model.vae_scale) ** 2 // 4 + model.max_sequence_length
    per_image = 34 * tokens * config.num_attention_heads * config.attention_head_dim * (2 if model.cfg_scale > 1 else 1)
    assert model.batch_that_fits(128, 128, free_bytes=10 * per_image) == 5  # half of the free memory
    assert model.batch_that_fits(128, 128, free_bytes=per_image) == 1  # never none
    assert model.batch_that_fits(128, 128, free_bytes=1000 * per_image) == 64  # never more than the default
    assert model.batch_that_fits(256, 256, free_bytes=100 * per_image) < 50  # a larger image, fewer at once


def test_the_autocast_dtype_is_ignored_off_cuda(flux_dir):
    model = load_flow_model(flux_dir)
    cond = model.encode_prompts(PROMPTS[:1])
    x, sigma = torch.randn(1, *model.latent_shape(64, 64)), torch.full((1,), 0.5)
    plain = model.velocity(x, sigma, cond)
    model.autocast_dtype = torch.bfloat16  # autocast is a CUDA rule: a CPU tensor computes as before
    assert torch.equal(model.velocity(x, sigma, cond), plain)


def test_the_prompts_a_run_will_draw_are_known_before_it_draws_them():
    """What a GPU run encodes up front (trainer/loop.py build): the sampler's draws, peeked without moving it."""
    from trainer.data import PromptSampler

    sampler = PromptSampler(5, seed=3)
    ahead = sampler.peek(12)
    assert sampler.cursor == 0 and sorted(ahead[:5]) == list(range(5))  # each epoch visits every prompt once
    assert sampler.take(7) + sampler.take(5) == ahead  # the draws that follow are exactly those
    assert sampler.peek(12, start=0) == ahead and sampler.cursor == 12

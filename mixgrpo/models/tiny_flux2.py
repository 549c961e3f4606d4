"""Tiny FLUX.2 pipelines (``Flux2Pipeline`` [dev], ``Flux2KleinPipeline`` [klein]) with random weights, written
to a folder offline.

Real classes throughout: ``Flux2Transformer2DModel`` (with the guidance embedding for [dev]),
``AutoencoderKLFlux2`` with random batch-norm statistics (so the latent normalisation is exercised),
FLUX.2's scheduler settings, and as text encoder ``Mistral3ForConditionalGeneration`` (30 layers: the
pipeline reads hidden states 10, 20 and 30) for [dev] or ``Qwen3ForCausalLM`` (27 layers: 9, 18, 27)
for [klein]. Both use the byte-level ``Qwen2Tokenizer`` of :mod:`mixgrpo.models.tiny_zimage`, with
the words of [dev]'s system prompt as whole tokens and a chat template that reads FLUX.2's
message format (content as a list of text parts) as well as plain strings.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny import DEFAULT_WORDS, TinyConfig
from .tiny_zimage import qwen_tokenizer

SYSTEM_WORDS = ("user", "assistant", "system", "You", "are", "AI", "that", "reasons", "about", "image", "descriptions",
                "give", "structured", "responses", "focusing", "object", "relationships", "attribution", "actions",
                "without", "speculation")
CHAT_TEMPLATE = ("{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' }}"
                 "{%- if message['content'] is string %}{{- message['content'] }}{%- else %}"
                 "{%- for part in message['content'] %}{{- part['text'] }}{%- endfor %}{%- endif %}"
                 "{{- '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
                 "{%- endif %}")
#: FLUX.2's scheduler: the pipeline passes its empirical μ, the scheduler shifts by e^μ
SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                 base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential")


def _mistral3(cfg: TinyConfig, vocab: int):
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    return Mistral3ForConditionalGeneration(Mistral3Config(
        text_config=dict(model_type="mistral", vocab_size=vocab + 1, hidden_size=cfg.text_dim,
                         intermediate_size=2 * cfg.text_dim, num_hidden_layers=30, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=cfg.text_dim // 2, max_position_embeddings=1024),
        vision_config=dict(model_type="pixtral", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, head_dim=8, image_size=32, patch_size=8),
        image_token_index=vocab))


def _qwen3(cfg: TinyConfig, vocab: int, pad: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(Qwen3Config(
        vocab_size=vocab, hidden_size=cfg.text_dim, intermediate_size=2 * cfg.text_dim, num_hidden_layers=27,
        num_attention_heads=2, num_key_value_heads=1, head_dim=cfg.text_dim // 2, max_position_embeddings=1024,
        pad_token_id=pad, tie_word_embeddings=False))


def build_tiny_flux2(path: str | Path | None, variant: str = "dev", cfg: TinyConfig = TinyConfig(), seed: int = 0,
                     distilled: bool = False):
    """A random-weight FLUX.2 pipeline, ``variant`` ``"dev"`` or ``"klein"`` (``distilled``: the step-distilled
    [klein]); written to ``path`` unless it is None."""
    from diffusers import (AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Pipeline,
                           Flux2Transformer2DModel)

    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer(DEFAULT_WORDS + SYSTEM_WORDS)
    tokenizer.chat_template = CHAT_TEMPLATE
    head_dim = cfg.hidden // cfg.heads
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=cfg.double_blocks, num_single_layers=cfg.single_blocks,
        attention_head_dim=head_dim, num_attention_heads=cfg.heads, joint_attention_dim=3 * cfg.text_dim,
        timestep_guidance_channels=256, axes_dims_rope=(head_dim // 4,) * 4, guidance_embeds=variant == "dev")
    levels = len(cfg.vae_channels)
    vae = AutoencoderKLFlux2(block_out_channels=cfg.vae_channels, down_block_types=("DownEncoderBlock2D",) * levels,
                             up_block_types=("UpDecoderBlock2D",) * levels, layers_per_block=1, latent_channels=32,
                             norm_num_groups=8, use_quant_conv=False, use_post_quant_conv=False,
                             mid_block_add_attention=cfg.vae_mid_attention)
    vae.bn.running_mean.normal_(0, 0.5)
    vae.bn.running_var.uniform_(0.5, 2.0)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    if variant == "dev":
        pipe = Flux2Pipeline(scheduler=scheduler, vae=vae, text_encoder=_mistral3(cfg, len(tokenizer)),
                             tokenizer=tokenizer, transformer=transformer)
    elif variant == "klein":
        pipe = Flux2KleinPipeline(scheduler=scheduler, vae=vae,
                                  text_encoder=_qwen3(cfg, len(tokenizer), tokenizer.pad_token_id),
                                  tokenizer=tokenizer, transformer=transformer, is_distilled=distilled)
    else:
        raise ValueError(f"variant must be 'dev' or 'klein', got {variant!r}")
    if path is not None:
        pipe.save_pretrained(str(path))
    return pipe

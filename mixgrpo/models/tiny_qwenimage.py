"""A tiny Qwen-Image pipeline (``QwenImagePipeline``) with random weights, written to a folder offline.

Real classes throughout: ``QwenImageTransformer2DModel``, a ``Qwen2_5_VLForConditionalGeneration`` text
encoder (a one-block vision tower it never uses), ``AutoencoderKLQwenImage`` with Qwen-Image's per-channel
latent statistics, Qwen-Image's scheduler settings, and the byte-level ``Qwen2Tokenizer`` of
:mod:`mixgrpo.models.tiny_zimage` with the words of the pipeline's system prompt as whole tokens, so that
its 34 leading template tokens are the system prompt, as with Qwen's own tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny import DEFAULT_WORDS, TinyConfig
from .tiny_zimage import qwen_tokenizer

#: the words of QwenImagePipeline's system prompt (its template drops them: exactly 34 tokens with these merges)
TEMPLATE_WORDS = ("user", "assistant", "system", "Describe", "image", "by", "detailing", "color", "shape", "size",
                  "texture", "quantity", "text", "spatial", "relationships", "objects", "background")

#: Qwen-Image's scheduler: e^μ shift from 0.5 at 256 tokens to 0.9 at 8192, the last σ before 0 stretched to 0.02
SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                 base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")


def _text_encoder(cfg: TinyConfig, tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    vocab = len(tokenizer) + 4  # the four vision tokens last
    head_dim = cfg.text_dim // 2
    third = head_dim // 2 // 3
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab, hidden_size=cfg.text_dim, intermediate_size=2 * cfg.text_dim,
                         num_hidden_layers=max(2, cfg.text_layers), num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=1024, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id,
                         rope_scaling={"type": "mrope", "mrope_section": [head_dim // 2 - 2 * third, third, third]}),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=cfg.text_dim,
                           fullatt_block_indexes=[0]),
        image_token_id=vocab - 4, video_token_id=vocab - 3, vision_start_token_id=vocab - 2,
        vision_end_token_id=vocab - 1)
    return Qwen2_5_VLForConditionalGeneration(config)


def build_tiny_qwenimage(path: str | Path | None, cfg: TinyConfig = TinyConfig(), seed: int = 0):
    """A random-weight ``QwenImagePipeline``; written to ``path`` unless it is None."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                           QwenImageTransformer2DModel)

    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer(DEFAULT_WORDS + TEMPLATE_WORDS)
    head_dim = cfg.hidden // cfg.heads
    rope = (head_dim - 2 * (3 * head_dim // 8), 3 * head_dim // 8, 3 * head_dim // 8)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * cfg.latent_channels, out_channels=cfg.latent_channels,
        num_layers=cfg.double_blocks + cfg.single_blocks, attention_head_dim=head_dim, num_attention_heads=cfg.heads,
        joint_attention_dim=cfg.text_dim, axes_dims_rope=rope)
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=cfg.latent_channels, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                 temperal_downsample=[False, True, True])
    pipe = QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=vae,
                             text_encoder=_text_encoder(cfg, tokenizer), tokenizer=tokenizer, transformer=transformer)
    if path is not None:
        pipe.save_pretrained(str(path))
    return pipe

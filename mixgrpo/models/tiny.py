"""Tiny FLUX-layout and SD3-layout pipelines with random weights, written to a folder offline.

Used by tests (and as the starting point of the embedded model): every component is the real
diffusers / transformers class, so the folder loads with ``FluxPipeline.from_pretrained`` or
``StableDiffusion3Pipeline.from_pretrained`` under ``HF_HUB_OFFLINE=1`` and goes through the same
adapter code as FLUX.1-dev. Tokenizers are built from a vocabulary list, with no download:
CLIP's is a BPE whose merges spell whole words, T5's a unigram model over whole words, both falling
back to characters for anything else.

Latent layout: 16 channels, 8× down-sampling (FLUX's); 2×2 packing happens inside the transformer
adapter, so 128×128 images → 16×16 latents → 64 tokens.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import torch

DEFAULT_WORDS = ("a", "an", "the", "and", "of", "on", "in", "above", "below", "left", "right", "top",
                 "bottom", "centre", "center", "one", "two", "three", "circle", "circles", "square",
                 "squares", "triangle", "triangles", "red", "green", "blue", "yellow", "purple", "orange")


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the random components (defaults: a few MB in float32)."""

    hidden: int = 64            # transformer width = heads · head_dim
    heads: int = 2
    double_blocks: int = 1
    single_blocks: int = 1
    text_dim: int = 32          # T5 / CLIP hidden size (joint attention and pooled projection)
    text_layers: int = 1
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)  # 4 levels = 8× down-sampling
    latent_channels: int = 16
    vae_mid_attention: bool = True


def _bpe_words(parts: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges (lowest rank first) to a word split into symbols."""
    while len(parts) > 1:
        pairs = [(ranks.get(p, None), i) for i, p in enumerate(zip(parts, parts[1:]))]
        pairs = [(r, i) for r, i in pairs if r is not None]
        if not pairs:
            break
        _, i = min(pairs)
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
    return parts


def clip_tokenizer(words=DEFAULT_WORDS):
    """CLIP BPE tokenizer whose merges make each of ``words`` one token; other text falls back to characters.

    Merges are grown word by word: apply the merges so far, and while the word is still in pieces,
    append a merge of its first two pieces. Appended merges rank last, so they never change how an
    earlier word is split.
    """
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + "-'":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(w.lower() for w in words):
        parts = _bpe_words(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(parts) > 1:
            ranks[(parts[0], parts[1])] = len(ranks)
            vocab.setdefault(parts[0] + parts[1], len(vocab))
            parts = _bpe_words(parts, ranks)
    merges = sorted(ranks, key=ranks.get)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def t5_tokenizer(words=DEFAULT_WORDS):
    """Unigram T5 tokenizer: whole words are single pieces, anything else falls back to characters."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    pieces += [("▁" + w, -1.0) for w in dict.fromkeys(words)]
    pieces += [(c, -5.0) for c in string.ascii_lowercase + string.digits + "-'"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)


def _text_encoders(cfg: TinyConfig, clip_vocab: int, t5_vocab: int):
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=clip_vocab, hidden_size=cfg.text_dim, intermediate_size=2 * cfg.text_dim,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=cfg.text_dim,
        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    t5 = T5EncoderModel(T5Config(
        vocab_size=t5_vocab, d_model=cfg.text_dim, d_kv=cfg.text_dim // 2, d_ff=2 * cfg.text_dim,
        num_layers=cfg.text_layers, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    return clip, t5


def _vae(cfg: TinyConfig, shift_factor: float | None):
    from diffusers import AutoencoderKL

    levels = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels, block_out_channels=cfg.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        layers_per_block=1, norm_num_groups=8, sample_size=128, scaling_factor=1.0,
        shift_factor=shift_factor, use_quant_conv=False, use_post_quant_conv=False,
        mid_block_add_attention=cfg.vae_mid_attention)


def build_tiny_flux(path: str | Path | None, cfg: TinyConfig = TinyConfig(), seed: int = 0, words=DEFAULT_WORDS):
    """A random-weight ``FluxPipeline``; written to ``path`` unless it is None."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    tok, tok2 = clip_tokenizer(words), t5_tokenizer(words)
    clip, t5 = _text_encoders(cfg, len(tok), len(tok2))
    head_dim = cfg.hidden // cfg.heads
    rope = (head_dim - 2 * (3 * head_dim // 8), 3 * head_dim // 8, 3 * head_dim // 8)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * cfg.latent_channels, num_layers=cfg.double_blocks,
        num_single_layers=cfg.single_blocks, attention_head_dim=head_dim, num_attention_heads=cfg.heads,
        joint_attention_dim=cfg.text_dim, pooled_projection_dim=cfg.text_dim, guidance_embeds=False,
        axes_dims_rope=rope)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=_vae(cfg, shift_factor=0.0), text_encoder=clip, tokenizer=tok,
                        text_encoder_2=t5, tokenizer_2=tok2, transformer=transformer)
    if path is not None:
        pipe.save_pretrained(str(path))
    return pipe


def build_tiny_sd3(path: str | Path, cfg: TinyConfig = TinyConfig(), seed: int = 0, words=DEFAULT_WORDS):
    """Write a random-weight ``StableDiffusion3Pipeline`` folder (two CLIPs + T5) and return it."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tok, tok3 = clip_tokenizer(words), t5_tokenizer(words)
    clip_a, t5 = _text_encoders(cfg, len(tok), len(tok3))
    clips = [CLIPTextModelWithProjection(clip_a.config) for _ in range(2)]
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        num_layers=cfg.double_blocks + cfg.single_blocks, attention_head_dim=cfg.hidden // cfg.heads,
        num_attention_heads=cfg.heads, joint_attention_dim=cfg.text_dim,
        caption_projection_dim=cfg.hidden, pooled_projection_dim=2 * cfg.text_dim, pos_embed_max_size=32)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_vae(cfg, 0.0),
        text_encoder=clips[0], tokenizer=tok, text_encoder_2=clips[1], tokenizer_2=clip_tokenizer(words),
        text_encoder_3=t5, tokenizer_3=tok3)
    pipe.save_pretrained(str(path))
    return pipe

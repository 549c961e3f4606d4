"""A tiny Z-Image pipeline (``ZImagePipeline``) with random weights, written to a folder offline.

Real classes throughout: ``ZImageTransformer2DModel``, a ``Qwen3Model`` text encoder, FLUX's
``AutoencoderKL`` with Z-Image's latent scaling, and a ``Qwen2Tokenizer`` built here: a byte-level BPE
whose merges spell each world word (and the word after a space, ``Ġword``) as one token, falling
back to the 256 byte symbols for anything else, with Qwen's chat template reduced to what the
pipeline asks of it (one user message, then the assistant's turn).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny import DEFAULT_WORDS, TinyConfig, _bpe_words, _vae

#: pad, message start and message end (Qwen's special tokens the pipeline's prompt uses)
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = ("{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                 "+ '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
                 "{%- endif %}")


def byte_alphabet() -> list[str]:
    """The 256 printable symbols byte-level BPE writes bytes with (space → ``Ġ``, newline → ``Ċ``): printable
    Latin-1 bytes stand for themselves, the others take the code points from 256 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def qwen_tokenizer(words=DEFAULT_WORDS + ("user", "assistant")):
    """``Qwen2Tokenizer`` whose merges make each of ``words`` one token, with and without a leading space."""
    from transformers import Qwen2Tokenizer

    vocab = {token: index for index, token in enumerate(SPECIALS)}
    for symbol in byte_alphabet():
        vocab.setdefault(symbol, len(vocab))
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(words):
        for form in (word, "Ġ" + word):
            parts = _bpe_words(list(form), ranks)
            while len(parts) > 1:
                ranks[(parts[0], parts[1])] = len(ranks)
                vocab.setdefault(parts[0] + parts[1], len(vocab))
                parts = _bpe_words(parts, ranks)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=sorted(ranks, key=ranks.get), unk_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=4096,
                               additional_special_tokens=["<|im_start|>", "<|im_end|>"], chat_template=CHAT_TEMPLATE)
    tokenizer.padding_side = "right"
    return tokenizer


def build_tiny_zimage(path: str | Path | None, cfg: TinyConfig = TinyConfig(), seed: int = 0):
    """A random-weight ``ZImagePipeline`` (Z-Image-Turbo's scheduler: a fixed shift of 3); written to ``path``
    unless it is None."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    text_encoder = Qwen3Model(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=cfg.text_dim, intermediate_size=2 * cfg.text_dim,
        num_hidden_layers=max(2, cfg.text_layers), num_attention_heads=2, num_key_value_heads=1,
        head_dim=cfg.text_dim // 2, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False))
    head_dim = cfg.hidden // cfg.heads
    axes = [head_dim - 2 * (3 * head_dim // 8), 3 * head_dim // 8, 3 * head_dim // 8]
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=cfg.latent_channels, dim=cfg.hidden,
        n_layers=cfg.double_blocks + cfg.single_blocks, n_refiner_layers=1, n_heads=cfg.heads, n_kv_heads=cfg.heads,
        qk_norm=True, cap_feat_dim=cfg.text_dim, rope_theta=256.0, t_scale=1000.0, axes_dims=axes,
        axes_lens=[1024, 64, 64])
    vae = _vae(cfg, shift_factor=0.1159)
    vae.register_to_config(scaling_factor=0.3611)  # Z-Image's latent scaling
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    pipe = ZImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer)
    if path is not None:
        pipe.save_pretrained(str(path))
    return pipe

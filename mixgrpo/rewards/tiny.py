"""Tiny random reward models written to folders offline, for tests and the CPU reward benchmark."""

from __future__ import annotations

from pathlib import Path

import torch

# An open_clip CLIP small enough for CPU tests; the vocabulary and context are ViT-H-14's, so the
# real tokenizer applies.
TINY_OPEN_CLIP = dict(embed_dim=32,
                      vision_cfg=dict(image_size=224, layers=1, width=32, head_width=16, patch_size=32),
                      text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))


def build_tiny_clip_folder(path: str | Path, seed: int = 0) -> Path:
    """A random transformers ``CLIPModel`` + image processor + offline tokenizer (PickScore / CLIP layout)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from ..models.tiny import clip_tokenizer

    tokenizer = clip_tokenizer()
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=16, logit_scale_init_value=2.6592)
    path = Path(path)
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(path)
    return path

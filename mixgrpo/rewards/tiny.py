"""Tiny random reward models written to folders offline, for tests and the CPU reward benchmark."""

from __future__ import annotations

import string
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


# ImageReward with a tiny BLIP: ViT of width 32 at 224 px (7×7 patches), text encoder of width 32.
TINY_IMAGE_REWARD_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                image_size=224, patch_size=32)
TINY_MED_CONFIG = dict(architectures=["BertModel"], attention_probs_dropout_prob=0.1, hidden_act="gelu",
                       hidden_dropout_prob=0.1, hidden_size=32, initializer_range=0.02, intermediate_size=64,
                       layer_norm_eps=1e-12, max_position_embeddings=64, model_type="bert", num_attention_heads=2,
                       num_hidden_layers=2, pad_token_id=0, type_vocab_size=2, encoder_width=768,
                       add_cross_attention=True)


def bert_vocab(words=None) -> list[str]:
    """A WordPiece vocabulary in bert-base-uncased's style: special tokens, characters, ``##`` pieces, words."""
    from ..models.tiny import DEFAULT_WORDS

    chars = string.ascii_lowercase + string.digits
    return list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars),
                               *string.punctuation, *(words or DEFAULT_WORDS)]))


def tiny_image_reward_state_dict(vision: dict, med: dict, seed: int = 0) -> dict:
    """Random tensors under the official ``ImageReward.pt`` keys (BLIP's ``vit.py`` / ``med.py`` names).

    Scales keep activations O(1) so that different images and prompts get clearly different scores.
    """
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def linear(name, n_out, n_in):
        sd[f"{name}.weight"] = torch.randn(n_out, n_in, generator=g) / n_in ** 0.5
        sd[f"{name}.bias"] = 0.1 * torch.randn(n_out, generator=g)

    def norm(name, n):
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(n, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(n, generator=g)

    d, p, m = vision["hidden_size"], vision["patch_size"], vision["intermediate_size"]
    v = "blip.visual_encoder"
    sd[f"{v}.cls_token"] = torch.randn(1, 1, d, generator=g)
    sd[f"{v}.pos_embed"] = 0.5 * torch.randn(1, (vision["image_size"] // p) ** 2 + 1, d, generator=g)
    sd[f"{v}.patch_embed.proj.weight"] = torch.randn(d, 3, p, p, generator=g) / (3 * p * p) ** 0.5 * 4
    sd[f"{v}.patch_embed.proj.bias"] = 0.1 * torch.randn(d, generator=g)
    for i in range(vision["num_hidden_layers"]):
        b = f"{v}.blocks.{i}"
        norm(f"{b}.norm1", d)
        linear(f"{b}.attn.qkv", 3 * d, d)
        linear(f"{b}.attn.proj", d, d)
        norm(f"{b}.norm2", d)
        linear(f"{b}.mlp.fc1", m, d)
        linear(f"{b}.mlp.fc2", d, m)
    norm(f"{v}.norm", d)

    h, inter, t = med["hidden_size"], med["intermediate_size"], "blip.text_encoder"
    sd[f"{t}.embeddings.word_embeddings.weight"] = torch.randn(med["vocab_size"], h, generator=g)
    sd[f"{t}.embeddings.position_embeddings.weight"] = 0.5 * torch.randn(med["max_position_embeddings"], h, generator=g)
    sd[f"{t}.embeddings.position_ids"] = torch.arange(med["max_position_embeddings"])[None]  # a buffer BLIP saves
    norm(f"{t}.embeddings.LayerNorm", h)
    for i in range(med["num_hidden_layers"]):
        layer = f"{t}.encoder.layer.{i}"
        for kind, kv_width in (("attention", h), ("crossattention", d)):
            linear(f"{layer}.{kind}.self.query", h, h)
            linear(f"{layer}.{kind}.self.key", h, kv_width)
            linear(f"{layer}.{kind}.self.value", h, kv_width)
            linear(f"{layer}.{kind}.output.dense", h, h)
            norm(f"{layer}.{kind}.output.LayerNorm", h)
        linear(f"{layer}.intermediate.dense", inter, h)
        linear(f"{layer}.output.dense", h, inter)
        norm(f"{layer}.output.LayerNorm", h)
    linear("blip.vision_proj", 256, d)  # BLIP's contrastive projections: saved, unused by the score
    linear("blip.text_proj", 256, h)
    head = ((1024, h), (128, 1024), (64, 128), (16, 64), (1, 16))  # Linear layers 0, 2, 4, 6, 7 (1, 3, 5: dropout)
    for k, (n_out, n_in) in zip((0, 2, 4, 6, 7), head, strict=True):
        linear(f"mlp.layers.{k}", n_out, n_in)
    return sd


def build_tiny_image_reward_folder(path: str | Path, seed: int = 0, vision: dict = TINY_IMAGE_REWARD_VISION,
                                   med: dict = TINY_MED_CONFIG) -> Path:
    """An ``ImageReward/`` folder as published: ``ImageReward.pt`` (official keys), ``med_config.json``, ``vocab.txt``."""
    import json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = bert_vocab()
    med = dict(med, vocab_size=len(vocab) + 2)  # + BLIP's [DEC] and [ENC]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "med_config.json").write_text(json.dumps(med, indent=2))
    torch.save(tiny_image_reward_state_dict(vision, med, seed), path / "ImageReward.pt")
    return path

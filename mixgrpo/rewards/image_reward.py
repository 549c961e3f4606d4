"""ImageReward (Xu et al., NeurIPS 2023) on ``transformers``' BLIP classes, from the official ``ImageReward.pt``.

Model: BLIP "large" at 224 px with a small MLP head; dropout is off at inference.

    v = ViT-L/16(x)                        [B, 197, 1024]  BLIP's vision encoder (pre-norm, LayerNorm ε = 1e-6)
    h = BERT_med(tokens | cross-attn to v)  [B, 35, 768]    bert-base with cross-attention to v in every layer
    r = L₅(L₄(L₃(L₂(L₁(h[CLS])))))                          Linear 768→1024→128→64→16→1, no activations
    s = (r − 0.16717362830052426) / 1.0333394966054072      the published standardisation (≈ N(0, 1) on its data)

Tokens: bert-base-uncased WordPiece, ``[CLS] prompt [SEP]`` padded (and truncated) to 35, with its
attention mask. Pixels: RGB in [0, 1] → resize the shortest side to 224 (bicubic, antialiased;
the long side ``⌊224·long/short⌋``) → centre crop 224 → OpenAI CLIP mean/std. The official scorer
resizes 8-bit PIL images; on float tensors the result differs by the 8-bit rounding only.

Folder ``ImageReward/`` (found like every reward weight, see :mod:`.weights`):
``ImageReward.pt`` (or ``.safetensors``) and ``med_config.json`` from huggingface.co/THUDM/ImageReward,
and bert-base-uncased's ``vocab.txt`` (or ``tokenizer.json``) from huggingface.co/google-bert/bert-base-uncased.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ImageInputError, ModelLoadError
from .base import Reward, RewardResult
from .hps import OPENAI_MEAN, OPENAI_STD, load_state_dict
from .registry import register
from .weights import find_weight_file

SCORE_MEAN, SCORE_STD = 0.16717362830052426, 1.0333394966054072
MAX_TOKENS = 35
#: BLIP's ViT-L/16 (``create_vit("large", 224)``); LayerNorm ε 1e-6 and exact GELU are fixed below
VIT_L16 = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
               image_size=224, patch_size=16)
PUBLISHED = "https://huggingface.co/THUDM/ImageReward"
TOKENIZER_PUBLISHED = "https://huggingface.co/google-bert/bert-base-uncased"

# official key (regex) → key of ImageRewardModel; applied first match only
_RENAMES = [
    (r"^blip\.visual_encoder\.cls_token$", "vision.embeddings.class_embedding"),
    (r"^blip\.visual_encoder\.pos_embed$", "vision.embeddings.position_embedding"),
    (r"^blip\.visual_encoder\.patch_embed\.proj\.", "vision.embeddings.patch_embedding."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.norm1\.", r"vision.encoder.layers.\1.layer_norm1."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.norm2\.", r"vision.encoder.layers.\1.layer_norm2."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.attn\.qkv\.", r"vision.encoder.layers.\1.self_attn.qkv."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.attn\.proj\.", r"vision.encoder.layers.\1.self_attn.projection."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.mlp\.", r"vision.encoder.layers.\1.mlp."),
    (r"^blip\.visual_encoder\.norm\.", "vision.post_layernorm."),
    (r"^blip\.text_encoder\.", "text."),     # med's BertModel names are transformers' BlipTextModel names
    (r"^mlp\.layers\.", "head."),
]
# in the checkpoint but unused for scoring: BLIP's contrastive projections and position-id buffers
_UNUSED = re.compile(r"^blip\.(vision_proj|text_proj)\.|\.position_ids$")


def official_to_ours(state_dict: dict) -> dict:
    """Rename an ``ImageReward.pt`` state dict to :class:`ImageRewardModel` keys (unused keys dropped)."""
    out = {}
    for key, value in state_dict.items():
        if _UNUSED.search(key):
            continue
        for pattern, replacement in _RENAMES:
            new, hit = re.subn(pattern, replacement, key)
            if hit:
                out[new] = value
                break
        else:
            out[key] = value  # unknown: load_state_dict reports it
    return out


def image_reward_preprocess(images: Tensor, size: int = 224) -> Tensor:
    """``[B, 3, H, W]`` in [0, 1] → ``[B, 3, size, size]``: shortest side to ``size``, centre crop, CLIP mean/std."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    if images.ndim != 4 or images.shape[1] != 3:
        raise ImageInputError(f"expected images [B, 3, H, W] in [0, 1], found shape {list(images.shape)}")
    h, w = images.shape[-2:]
    short, long = min(h, w), max(h, w)
    new_long = int(size * long / short)
    new_h, new_w = (size, new_long) if h <= w else (new_long, size)
    x = images.float()
    if (new_h, new_w) != (h, w):
        x = resize(x, [new_h, new_w], InterpolationMode.BICUBIC, antialias=True).clamp_(0, 1)  # as 8-bit PIL
    top, left = round((new_h - size) / 2), round((new_w - size) / 2)  # torchvision CenterCrop
    x = x[..., top:top + size, left:left + size]
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class ImageRewardModel(nn.Module):
    """BLIP vision encoder + BLIP text encoder with cross-attention + MLP head; returns standardised scores."""

    def __init__(self, vision: dict, med_config: dict):
        super().__init__()
        from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

        self.vision = BlipVisionModel(BlipVisionConfig(**vision, layer_norm_eps=1e-6, hidden_act="gelu",
                                                       attention_dropout=0.0))
        text = BlipTextConfig(
            vocab_size=med_config["vocab_size"], hidden_size=med_config["hidden_size"],
            num_hidden_layers=med_config["num_hidden_layers"], num_attention_heads=med_config["num_attention_heads"],
            intermediate_size=med_config["intermediate_size"], hidden_act=med_config.get("hidden_act", "gelu"),
            layer_norm_eps=med_config.get("layer_norm_eps", 1e-12),
            max_position_embeddings=med_config["max_position_embeddings"],
            pad_token_id=med_config.get("pad_token_id", 0), bos_token_id=None, eos_token_id=None, sep_token_id=None,
            encoder_hidden_size=vision["hidden_size"],  # BLIP overrides med's encoder_width with the ViT width
            is_decoder=True,                            # builds the cross-attention layers; run bidirectionally
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.text = BlipTextModel(text, add_pooling_layer=False)
        width = med_config["hidden_size"]
        self.head = nn.Sequential(nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                  nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Standardised scores ``(r − μ)/σ``, float32 ``[B]``."""
        image_embeds = self.vision(pixel_values=pixels).last_hidden_state
        text = self.text(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
                         is_decoder=False).last_hidden_state
        r = self.head(text[:, 0].float()).squeeze(-1)
        return (r - SCORE_MEAN) / SCORE_STD


def _weights_file(folder: Path) -> Path | None:
    for name in ("ImageReward.safetensors", "ImageReward.pt"):
        if (folder / name).is_file():
            return folder / name
    return None


def _check_folder(folder: Path) -> None:
    """Every file the folder needs, or one error naming each missing file and where it is published."""
    missing = []
    if _weights_file(folder) is None:
        missing.append(f"ImageReward.pt (or ImageReward.safetensors), from {PUBLISHED}")
    if not (folder / "med_config.json").is_file():
        missing.append(f"med_config.json, from {PUBLISHED}")
    if not ((folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()):
        missing.append(f"vocab.txt (or tokenizer.json) of bert-base-uncased, from {TOKENIZER_PUBLISHED}")
    if missing:
        raise ModelLoadError(f"ImageReward folder {folder} is incomplete; missing:\n  " + "\n  ".join(missing))


@register("imagereward")
class ImageReward(Reward):
    """``path``: the ``ImageReward`` folder; ``vision_config`` overrides ViT-L/16 (tests use a tiny one)."""

    name = "imagereward"
    device_needs = "gpu"

    def __init__(self, path=None, device: str | None = None, dtype: torch.dtype = torch.float32,
                 vision_config: dict | None = None, batch_size: int = 16, differentiable: bool = False, **_unused):
        from transformers import BertTokenizer

        folder = find_weight_file("ImageReward", path, "MIXGRPO_IMAGE_REWARD",
                                  f"{PUBLISHED} (ImageReward.pt, med_config.json) with the tokenizer of "
                                  f"{TOKENIZER_PUBLISHED} (vocab.txt)", folder=True)
        _check_folder(folder)
        vision = dict(vision_config or VIT_L16)
        model = ImageRewardModel(vision, json.loads((folder / "med_config.json").read_text()))
        weights = _weights_file(folder)
        try:
            model.load_state_dict(official_to_ours(load_state_dict(weights)))
        except RuntimeError as error:
            raise ModelLoadError(f"{weights} does not fit ImageReward (BLIP ViT {vision}, {folder / 'med_config.json'}): "
                                 f"{error}") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device, dtype).eval().requires_grad_(False)
        self.model.head.float()  # the official head runs on float32 features
        self.tokenizer = BertTokenizer.from_pretrained(str(folder))
        # BLIP's tokenizer adds [DEC] and [ENC] (ids 30522, 30523 of bert-base-uncased) as special tokens
        self.tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
        self.image_size, self.dtype = vision["image_size"], dtype
        self.batch_size, self.differentiable = batch_size, differentiable
        self._tokens: dict[str, tuple[Tensor, Tensor]] = {}

    def tokenize(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """``input_ids`` and ``attention_mask`` ``[B, 35]`` (each distinct prompt tokenised once per process)."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._tokens]
        if new:
            if len(self._tokens) + len(new) > 65536:
                self._tokens.clear()
            out = self.tokenizer(new, padding="max_length", truncation=True, max_length=MAX_TOKENS,
                                 return_tensors="pt")
            for i, prompt in enumerate(new):
                self._tokens[prompt] = (out["input_ids"][i], out["attention_mask"][i])
        ids, mask = zip(*(self._tokens[p] for p in prompts))
        return torch.stack(ids).to(self.device), torch.stack(mask).to(self.device)

    def score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        """Scores under ``torch.no_grad`` unless built with ``differentiable=True`` (gradients to the images)."""
        if len(prompts) != images.shape[0]:
            raise ImageInputError(f"got {images.shape[0]} images but {len(prompts)} prompts.")
        with torch.set_grad_enabled(self.differentiable):
            scores = []
            for start in range(0, len(prompts), self.batch_size):
                stop = start + self.batch_size
                pixels = image_reward_preprocess(images[start:stop].to(self.device), self.image_size)
                ids, mask = self.tokenize(prompts[start:stop])
                scores.append(self.model(pixels.to(self.dtype), ids, mask).float().cpu())
        return RewardResult(torch.cat(scores))

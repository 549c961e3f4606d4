"""CLIP-family rewards on ``transformers`` CLIP models from local folders: PickScore and CLIP score.

Both embed the image (the folder's ``CLIPImageProcessor``: resize the shortest side, centre crop,
normalise) and the prompt (its tokenizer, truncated to the model's context), then take the cosine
``c = ⟨f_img/‖f_img‖, f_txt/‖f_txt‖⟩``:

* ``pickscore``: ``s = exp(logit_scale)·c`` (≈ 100·c); training standardisation ``(s − 18)/8``;
  reported as ``s/100``. Folder ``PickScore_v1`` (model) with the processor of CLIP-ViT-H-14-laion2B.
* ``clip``: ``s = 100·max(c, 0)`` (the usual CLIPScore scaling); folder ``clip``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ImageInputError
from .base import Normalization, Reward, RewardResult
from .registry import register
from .weights import find_weight_file


def _projected(features) -> Tensor:
    """transformers < 5 returns the projected embedding, ≥ 5 an output whose ``pooler_output`` holds it."""
    return features if isinstance(features, Tensor) else features.pooler_output


class TransformersCLIPReward(Reward):
    folder_name = "clip"
    env_var = "MIXGRPO_CLIP"
    published_at = "https://huggingface.co/openai/clip-vit-large-patch14"
    device_needs = "gpu"

    def __init__(self, path=None, device: str | None = None, dtype: torch.dtype = torch.float32,
                 batch_size: int = 16, **_unused):
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        folder = find_weight_file(self.folder_name, path, self.env_var, self.published_at, folder=True)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = CLIPModel.from_pretrained(str(folder), dtype=dtype).to(self.device).eval().requires_grad_(False)
        self.processor = CLIPImageProcessor.from_pretrained(str(folder))
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.dtype, self.batch_size = dtype, batch_size

    def transform(self, cosine: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        if images.ndim != 4 or images.shape[1] != 3 or len(prompts) != images.shape[0]:
            raise ImageInputError(f"expected images [B, 3, H, W] in [0, 1] and B prompts; got shape "
                                  f"{list(images.shape)} and {len(prompts)} prompts.")
        out = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = images[start:start + self.batch_size].float().clamp(0, 1).cpu()
            pixels = self.processor(images=list(chunk), return_tensors="pt", do_rescale=False)["pixel_values"]
            tokens = self.tokenizer(prompts[start:start + self.batch_size], padding=True, truncation=True,
                                    max_length=self.model.config.text_config.max_position_embeddings,
                                    return_tensors="pt").to(self.device)
            image_features = _projected(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
            text_features = _projected(self.model.get_text_features(**tokens))
            cosine = torch.nn.functional.cosine_similarity(image_features.float(), text_features.float(), dim=-1)
            out.append(self.transform(cosine).cpu())
        return RewardResult(torch.cat(out))


@register("pickscore")
class PickScore(TransformersCLIPReward):
    name = "pickscore"
    folder_name = "PickScore_v1"
    env_var = "MIXGRPO_PICKSCORE"
    published_at = "https://huggingface.co/yuvalkirstain/PickScore_v1"
    normalization = Normalization(shift=18.0, scale=8.0)

    def transform(self, cosine: Tensor) -> Tensor:
        return self.model.logit_scale.exp().float().cpu() * cosine.cpu()


@register("clip")
class CLIPScore(TransformersCLIPReward):
    name = "clip"

    def transform(self, cosine: Tensor) -> Tensor:
        return 100.0 * cosine.clamp(min=0)

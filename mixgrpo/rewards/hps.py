"""HPS v2 / v2.1 (Human Preference Score) on ``open-clip-torch``, from the official state dicts.

Model: open_clip ViT-H-14 with ``HPS_v2_compressed.pt`` / ``HPS_v2.1_compressed.pt``
(``checkpoint["state_dict"]``), loaded with ``torch.load(weights_only=True)`` or safetensors.

Preprocessing (as the reference scorer): RGB in [0, 1] → resize the longest side to 224 (bicubic,
antialiased, each side ``round(side·224/longest)``) → pad to 224×224 with 0 (``⌊pad/2⌋`` before) →
normalise with the OpenAI CLIP mean/std.
Score: ``s = ⟨f_img/‖f_img‖, f_txt/‖f_txt‖⟩`` (no logit scale); paper values are about 0.2–0.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ImageInputError
from .base import Reward, RewardResult
from .registry import register
from .weights import find_weight_file

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
ENV = {"v2.0": "MIXGRPO_HPS_V2", "v2.1": "MIXGRPO_HPS_V2_1"}
PUBLISHED = "https://huggingface.co/xswu/HPSv2"


def hps_preprocess(images: Tensor, size: int = 224) -> Tensor:
    """``[B, 3, H, W]`` in [0, 1] → normalised ``[B, 3, size, size]`` (resize longest side, pad with 0)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    if images.ndim != 4 or images.shape[1] != 3:
        raise ImageInputError(f"expected images [B, 3, H, W] in [0, 1], found shape {list(images.shape)}")
    h, w = images.shape[-2:]
    scale = size / max(h, w)
    new_h, new_w = round(h * scale), round(w * scale)
    x = resize(images.float(), [new_h, new_w], InterpolationMode.BICUBIC, antialias=True)
    pad_h, pad_w = size - new_h, size - new_w
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def load_state_dict(path) -> dict:
    """A checkpoint's tensors without executing pickled code (safetensors or weights-only torch.load)."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(str(path))
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint.get("state_dict", checkpoint)


class HPS(Reward):
    """``version`` "v2.0" or "v2.1"; ``model_config`` overrides ViT-H-14 (tests use a tiny one)."""

    device_needs = "gpu"

    def __init__(self, version: str = "v2.1", checkpoint=None, device: str | None = None,
                 dtype: torch.dtype = torch.float32, model_config: dict | None = None, batch_size: int = 16,
                 differentiable: bool = False, **_unused):
        import open_clip

        self.name = "hpsv2" if version == "v2.0" else "hpsv2.1"
        path = find_weight_file(FILES[version], checkpoint, ENV[version], PUBLISHED)
        if model_config is not None:
            model = open_clip.model.CLIP(**model_config)
        else:
            model = open_clip.create_model("ViT-H-14", pretrained=None)
        model.load_state_dict(load_state_dict(path))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device, dtype).eval().requires_grad_(False)
        self.dtype, self.batch_size, self.differentiable = dtype, batch_size, differentiable
        self.tokenizer = open_clip.get_tokenizer("ViT-H-14")
        self.image_size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) \
            else model.visual.image_size

    def score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        """Scores under ``torch.no_grad`` unless built with ``differentiable=True`` (gradients to the images)."""
        with torch.set_grad_enabled(self.differentiable):
            return self._score(images, prompts)

    def _score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        if len(prompts) != images.shape[0]:
            raise ImageInputError(f"got {images.shape[0]} images but {len(prompts)} prompts.")
        # a GRPO batch repeats each prompt N times: embed every distinct prompt once
        row_of = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        text_features = self.model.encode_text(self.tokenizer(list(row_of)).to(self.device), normalize=True)
        rows = torch.tensor([row_of[p] for p in prompts], device=self.device)
        scores = []
        for start in range(0, len(prompts), self.batch_size):
            pixels = hps_preprocess(images[start:start + self.batch_size].to(self.device), self.image_size)
            image_features = self.model.encode_image(pixels.to(self.dtype), normalize=True)
            text = text_features[rows[start:start + self.batch_size]]
            scores.append((image_features * text).sum(-1).float().cpu())
        return RewardResult(torch.cat(scores))


register("hpsv2")(lambda **options: HPS(version="v2.0", **options))
register("hpsv2.1")(lambda **options: HPS(version="v2.1", **options))

"""HPS v2 / v2.1 (Human Preference Score) on ``open-clip-torch``, from the official state dicts.

Model: open_clip ViT-H-14 with ``HPS_v2_compressed.pt`` / ``HPS_v2.1_compressed.pt``
(``checkpoint["state_dict"]``), loaded with ``torch.load(weights_only=True)`` or safetensors.

Preprocessing (as the reference scorer): RGB in [0, 1] → resize the longest side to 224 (bicubic,
antialiased, each side ``round(side·224/longest)``) → pad to 224×224 with 0 (``⌊pad/2⌋`` before) →
normalise with the OpenAI CLIP mean/std.
Score: ``s = ⟨f_img/‖f_img‖, f_txt/‖f_txt‖⟩`` (no logit scale); paper values are about 0.2–0.4.

Speed without changing a score: each distinct prompt is embedded once per process (cached), the
causal text tower runs only up to the longest prompt's end-of-text token, the normalisation runs
before or after the resize, whichever touches fewer pixels, and the resize writes into a reused,
already padded input buffer.
"""

from __future__ import annotations

import functools

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


def hps_preprocess(images: Tensor, size: int = 224, out: Tensor | None = None) -> Tensor:
    """``[B, 3, H, W]`` in [0, 1] → normalised ``[B, 3, size, size]`` (resize longest side, pad with 0).

    ``(resize(x) − μ)/σ = resize((x − μ)/σ)`` because the resize weights sum to 1, so the normalisation
    runs on whichever side of the resize has fewer pixels; the pad is the normalised 0, ``−μ/σ``. The
    resize writes straight into the padded result, or into ``out`` (a float32 ``[B, 3, size, size]``
    buffer the caller reuses, which saves allocating and faulting in a fresh image batch per call).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ImageInputError(f"expected images [B, 3, H, W] in [0, 1], found shape {list(images.shape)}")
    h, w = images.shape[-2:]
    scale = size / max(h, w)
    new_h, new_w = round(h * scale), round(w * scale)
    mean = torch.tensor(OPENAI_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=images.device).view(1, 3, 1, 1)
    normalise_first = h * w < new_h * new_w
    x = images.float().sub(mean).div_(std) if normalise_first else images.float()
    if out is None:
        out = torch.empty(len(images), 3, size, size, device=images.device)
    if (new_h, new_w) != (size, size):
        out.copy_((-mean / std).expand_as(out))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    region = out[..., top:top + new_h, left:left + new_w]
    if (new_h, new_w) != (h, w):
        _bicubic_resize_into(x, region)
    else:
        region.copy_(x)
    if not normalise_first:
        region.sub_(mean).div_(std)
    return out


def _bicubic_resize_into(x: Tensor, out: Tensor) -> None:
    """``out[:] = interpolate(x, out's size, bicubic, antialias)``: torch's kernel writing into ``out``
    (its ``out=`` overload), or a copy of ``F.interpolate`` where autograd needs the functional form.

    The private overload is worth its keep: with a plain ``F.interpolate`` + copy, ``benchmarks/rewards.py``
    measured 8.5–11.4× the reference scorer instead of 13.5–15.0× (3 runs each, same machine)."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        try:
            torch._C._nn._upsample_bicubic2d_aa(x, list(out.shape[-2:]), False, None, None, out=out)
            return
        except (AttributeError, RuntimeError, TypeError):  # a torch without this overload
            pass
    out.copy_(F.interpolate(x, size=tuple(out.shape[-2:]), mode="bicubic", antialias=True, align_corners=False))


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
        self._text_features: dict[str, Tensor] = {}  # prompt → normalised text feature (the model is frozen)
        self._pixel_buffer: Tensor | None = None

    def score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        """Scores under ``torch.no_grad`` unless built with ``differentiable=True`` (gradients to the images)."""
        with torch.set_grad_enabled(self.differentiable):
            return self._score(images, prompts)

    def _score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        if len(prompts) != images.shape[0]:
            raise ImageInputError(f"got {images.shape[0]} images but {len(prompts)} prompts.")
        text_features = self.text_features(prompts)
        scores = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = images[start:start + self.batch_size].to(self.device)
            pixels = hps_preprocess(chunk, self.image_size, out=None if self.differentiable else self._pixels(len(chunk)))
            image_features = self.model.encode_image(pixels.to(self.dtype), normalize=True)
            text = text_features[start:start + self.batch_size]
            scores.append((image_features * text).sum(-1).float().cpu())
        return RewardResult(torch.cat(scores))

    def text_features(self, prompts: list[str]) -> Tensor:
        """Normalised text features ``[B, D]``; each distinct prompt is embedded once per process (a GRPO
        batch repeats every prompt N times, and training revisits its prompts)."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._text_features]
        if new:
            if len(self._text_features) + len(new) > 65536:
                self._text_features.clear()
            with torch.no_grad():
                features = encode_text_causal(self.model, self.tokenizer(new).to(self.device))
            self._text_features.update(zip(new, features, strict=True))
        return torch.stack([self._text_features[p] for p in prompts])

    def _pixels(self, n: int) -> Tensor:
        """A reused input buffer for ``n`` images (scores are read before the next call overwrites it)."""
        if self._pixel_buffer is None or len(self._pixel_buffer) < n:
            self._pixel_buffer = torch.empty(n, 3, self.image_size, self.image_size, device=self.device)
        return self._pixel_buffer[:n]

    def clear_text_cache(self) -> None:
        """Forget the embedded prompts (the benchmark times scoring of prompts never seen)."""
        self._text_features.clear()


def encode_text_causal(model, tokens: Tensor) -> Tensor:
    """``model.encode_text(tokens, normalize=True)`` on the first ``n = max(eot) + 1`` positions only.

    The text tower is causal and reads its feature at the end-of-text token (the highest id), so the
    padding after the longest prompt's EOT cannot change any feature: cutting it gives the same
    numbers at ``n``/77 of the cost. Models without a causal mask or argmax pooling run in full.
    """
    if getattr(model, "text_pool_type", None) != "argmax" or getattr(model, "attn_mask", None) is None:
        return model.encode_text(tokens, normalize=True)
    n = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :n]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = x[torch.arange(len(x), device=x.device), tokens.argmax(dim=-1)]
    if isinstance(model.text_projection, torch.nn.Linear):
        x = model.text_projection(x)
    elif model.text_projection is not None:
        x = x @ model.text_projection
    return F.normalize(x, dim=-1)


register("hpsv2")(functools.partial(HPS, version="v2.0"))
register("hpsv2.1")(functools.partial(HPS, version="v2.1"))

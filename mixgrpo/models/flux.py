"""diffusers FLUX (FLUX.1-dev, FLUX.1-schnell, the embedded model) behind :class:`FlowModelAdapter`."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import FlowModelAdapter
from .registry import register_adapter


def pack_latents(x: Tensor) -> Tensor:
    """``[B, C, h, w]`` → ``[B, (h/2)·(w/2), 4C]``: each 2×2 patch becomes one token (FLUX layout)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), 4 * c)


def unpack_latents(tokens: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`pack_latents`."""
    b, _, d = tokens.shape
    c = d // 4
    return tokens.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device, dtype) -> Tensor:
    """Position ids of the packed tokens: ``(0, row, column)`` for each 2×2 patch."""
    ids = torch.zeros(h // 2, w // 2, 3, device=device, dtype=dtype)
    ids[..., 1] = torch.arange(h // 2, device=device, dtype=dtype)[:, None]
    ids[..., 2] = torch.arange(w // 2, device=device, dtype=dtype)[None, :]
    return ids.reshape(-1, 3)


@register_adapter("FluxPipeline")
class FluxAdapter(FlowModelAdapter):
    """FLUX: the transformer takes σ itself as timestep (it multiplies by 1000 inside).

    ``guidance`` feeds FLUX.1-dev's distilled guidance embedding (ignored by models without one).
    """

    family = "FLUX.1"
    required_components = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2",
                           "scheduler")
    timestep_scale = 1.0

    def __init__(self, pipe, guidance: float = 3.5, max_sequence_length: int = 512, quantize_timesteps: bool = False,
                 **guidance_options):
        super().__init__(pipe, quantize_timesteps, **guidance_options)
        self.guidance = guidance
        self.max_sequence_length = max_sequence_length

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> dict[str, Tensor]:
        """CLIP pooled vector + T5 token sequence per prompt."""
        embeds, pooled, _ = self.pipe.encode_prompt(prompts, prompt_2=None, device=self.device,
                                                    max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def model_velocity(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        b, _, h, w = x.shape
        dtype = self.dtype
        embeds = cond["prompt_embeds"].to(dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((b,), self.guidance, device=x.device, dtype=torch.float32)
        out = self.network(
            hidden_states=pack_latents(x.to(dtype)),
            timestep=self.model_timestep(sigma).to(dtype),
            guidance=guidance,
            pooled_projections=cond["pooled_prompt_embeds"].to(dtype),
            encoder_hidden_states=embeds,
            txt_ids=torch.zeros(embeds.shape[1], 3, device=x.device, dtype=dtype),
            img_ids=image_ids(h, w, x.device, dtype),
            return_dict=False,
        )[0]
        return unpack_latents(out, h, w)

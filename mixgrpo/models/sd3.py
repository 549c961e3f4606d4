"""diffusers Stable Diffusion 3 / 3.5 behind :class:`FlowModelAdapter`."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import FlowModelAdapter
from .registry import register_adapter


@register_adapter("StableDiffusion3Pipeline")
class SD3Adapter(FlowModelAdapter):
    """SD3: spatial latents go in as they are; the transformer takes ``timestep = 1000·σ``."""

    family = "SD3 / SD3.5"
    required_components = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3", "scheduler")
    timestep_scale = 1000.0

    def __init__(self, pipe, max_sequence_length: int = 256, quantize_timesteps: bool = False, **guidance_options):
        super().__init__(pipe, quantize_timesteps, **guidance_options)
        self.max_sequence_length = max_sequence_length

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> dict[str, Tensor]:
        """Two CLIP encoders (pooled, concatenated) and T5 (sequence); the negative prompt of
        classifier-free guidance is added by :meth:`FlowModelAdapter.encode_prompts`."""
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompts, prompt_2=None, prompt_3=None, device=self.device, do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def model_velocity(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        dtype = self.dtype
        return self.network(
            hidden_states=x.to(dtype),
            timestep=self.model_timestep(sigma).to(dtype),
            encoder_hidden_states=cond["prompt_embeds"].to(dtype),
            pooled_projections=cond["pooled_prompt_embeds"].to(dtype),
            return_dict=False,
        )[0]

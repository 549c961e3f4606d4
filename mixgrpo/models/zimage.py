"""diffusers Z-Image (``ZImagePipeline``: Z-Image-Turbo and Z-Image) behind :class:`FlowModelAdapter`.

Z-Image's transformer runs the other way round from FLUX's: it takes the time ``t = 1 − σ`` (and
multiplies it by 1000 inside) and predicts ``x0 − ε``, so the adapter hands it ``1 − σ`` in float32
and negates what comes back to get the velocity ``v ≈ ε − x0``. It takes lists: one ``[C, 1, h, w]``
latent and one ``[L_i, D]`` caption per image. Captions have their own lengths; the conditioning
keeps them padded to ``max_sequence_length`` with a mask (``prompt_mask``), so cached rows and the
doubled batch of guidance concatenate, and each image gets back exactly its own tokens.

Guidance: the pipeline's ``guidance_scale`` g is classifier-free guidance ``pos + g·(pos − neg)``,
which is this project's ``cfg_scale = 1 + g`` (Z-Image-Turbo samples with g = 0: ``cfg_scale`` 1).
Its two options, as the pipeline applies them to each image:

- ``cfg_normalization`` c > 0: the guided velocity is scaled down to ``c·‖v_cond‖`` when it is longer
  (norms over the whole image);
- ``cfg_truncation`` τ < 1: no guidance (``v = v_cond``) while ``1 − σ > τ``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..algorithm.schedule import sigma_to_timestep
from .base import FlowModelAdapter
from .registry import register_adapter


@register_adapter("ZImagePipeline")
class ZImageAdapter(FlowModelAdapter):
    family = "Z-Image"
    required_components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    block_lists = ("noise_refiner", "context_refiner", "layers")

    #: settings a model folder's ``mixgrpo.json`` may record for this adapter
    recorded_options = ("cfg_normalization", "cfg_truncation")

    def __init__(self, pipe, max_sequence_length: int = 512, quantize_timesteps: bool = False,
                 cfg_normalization: float = 0.0, cfg_truncation: float = 1.0, **guidance_options):
        super().__init__(pipe, quantize_timesteps, **guidance_options)
        self.max_sequence_length = max_sequence_length
        self.cfg_normalization, self.cfg_truncation = float(cfg_normalization), float(cfg_truncation)

    def combine_guidance(self, v_cond: Tensor, v_uncond: Tensor, sigma: Tensor) -> Tensor:
        v = super().combine_guidance(v_cond, v_uncond, sigma)
        if self.cfg_normalization > 0:
            limit = self.cfg_normalization * v_cond.flatten(1).norm(dim=1)
            length = v.flatten(1).norm(dim=1)
            v = v * torch.where(length > limit, limit / length, torch.ones_like(length)).view(-1, 1, 1, 1)
        if self.cfg_truncation < 1:
            unguided = (1 - sigma.float()) > self.cfg_truncation
            v = torch.where(unguided.view(-1, 1, 1, 1), v_cond, v)
        return v

    @property
    def hidden_size(self) -> int:
        return self.transformer.config.dim

    @staticmethod
    def comfyui_lora_key(peft_key: str) -> str:
        """ComfyUI's Z-Image LoRA key map takes ``diffusion_model.<diffusers module path>`` (not ``transformer.``)."""
        return "diffusion_model." + peft_key.removeprefix("transformer.")

    @staticmethod
    def lora_module(name: str) -> str:
        return name.removeprefix("diffusion_model.").removeprefix("transformer.")

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> dict[str, Tensor]:
        """The Qwen3 encoder's second-to-last hidden states of each chat-templated prompt, padded to
        ``max_sequence_length`` rows, and the mask of the prompt's own tokens."""
        # the pipeline rewrites the list it is given (the chat template): hand it a copy
        embeds, _ = self.pipe.encode_prompt(list(prompts), device=self.device, do_classifier_free_guidance=False,
                                            max_sequence_length=self.max_sequence_length)
        padded = embeds[0].new_zeros(len(embeds), self.max_sequence_length, embeds[0].shape[-1])
        mask = torch.zeros(len(embeds), self.max_sequence_length, dtype=torch.bool, device=embeds[0].device)
        for row, tokens in enumerate(embeds):
            padded[row, :len(tokens)], mask[row, :len(tokens)] = tokens, True
        return {"prompt_embeds": padded, "prompt_mask": mask}

    def model_timestep(self, sigma: Tensor) -> Tensor:
        """``t = 1 − σ`` (σ quantised first when asked), in float32: in bf16, 1 − σ near 1 keeps two digits."""
        return 1.0 - sigma_to_timestep(sigma.float(), 1.0, self.quantize_timesteps)

    def model_velocity(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        dtype = self.dtype
        b = x.shape[0]
        sigma = sigma.expand(b) if sigma.dim() == 0 else sigma
        captions = [row[mask].to(dtype) for row, mask in zip(cond["prompt_embeds"], cond["prompt_mask"])]
        latents = list(x.to(dtype).unsqueeze(2).unbind(0))
        out = self.network(latents, self.model_timestep(sigma), captions, return_dict=False)[0]
        return -torch.stack(out).squeeze(2)

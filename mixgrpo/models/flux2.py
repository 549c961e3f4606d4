"""diffusers FLUX.2 (``Flux2Pipeline``: FLUX.2 [dev]; ``Flux2KleinPipeline``: FLUX.2 [klein]) behind
:class:`FlowModelAdapter`.

- **Latents.** The VAE has 32 channels at 8× down-sampling. FLUX.2 samples in the space of its 2×2
  patches, normalised by the VAE's batch-norm statistics:

      z = (patchify(μ_VAE(x)) − running_mean) / sqrt(running_var + eps),   [B, 128, H/16, W/16]

  so the adapter's latent *is* that tensor (noise is drawn there), one transformer token per position.
- **Time.** The transformer takes σ itself (it multiplies by 1000 inside) and predicts ``ε − x0``.
  Position ids have four axes: ``(0, row, column, 0)`` for the image, ``(0, 0, 0, i)`` for text.
- **Text.** [dev]: Mistral Small 3's hidden states 10, 20 and 30 side by side; [klein]: Qwen3's 9, 18
  and 27. Always ``max_sequence_length`` tokens (padded, no mask): the conditioning depends on it.
- **Guidance.** [dev] is guidance-distilled: ``guidance`` (default 4) feeds its guidance embedding and
  ``cfg_scale`` stays 1. [klein] base samples with classifier-free guidance against the empty prompt
  (the pipeline's ``guidance_scale`` is ``cfg_scale``, default 4); the step-distilled [klein] has
  neither.
- **σ grid.** The pipeline's empirical μ, which depends on the image's tokens *and* the step count;
  the shift is ``e^μ``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ModelLoadError
from .base import FlowModelAdapter
from .registry import register_adapter


def empirical_mu(image_tokens: int, steps: int) -> float:
    """FLUX.2's σ-grid μ: linear in the image's tokens, and between 10 and 200 steps linear in the step count;
    past 4300 tokens it no longer depends on the steps.

        μ₂₀₀(n) = 1.6927e-4·n + 0.45667,   μ₁₀(n) = 8.7381e-5·n + 1.89833,
        μ = μ₂₀₀(n)  (n > 4300),   else  μ₂₀₀(n) + (μ₂₀₀(n) − μ₁₀(n))·(steps − 200)/190
    """
    at_200 = 1.6927e-4 * image_tokens + 0.45666666
    if image_tokens > 4300:
        return at_200
    at_10 = 8.73809524e-05 * image_tokens + 1.89833333
    return at_200 + (at_200 - at_10) * (steps - 200) / 190.0


def position_ids(rows: int, columns: int, text: int, device) -> tuple[Tensor, Tensor]:
    """FLUX.2's four-axis ids: ``(0, row, column, 0)`` per image token (row-major), ``(0, 0, 0, i)`` per text token."""
    image = torch.zeros(rows, columns, 4, dtype=torch.long, device=device)
    image[..., 1] = torch.arange(rows, device=device)[:, None]
    image[..., 2] = torch.arange(columns, device=device)[None, :]
    words = torch.zeros(text, 4, dtype=torch.long, device=device)
    words[:, 3] = torch.arange(text, device=device)
    return image.reshape(-1, 4), words


@register_adapter("Flux2Pipeline", "Flux2KleinPipeline")
class Flux2Adapter(FlowModelAdapter):
    family = "FLUX.2"
    required_components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    patch_size = 1  # a latent position is a token (the 2×2 patches are already channels)
    #: peft targets: the double blocks' image attention, and the single blocks' fused q, k, v and MLP input
    lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "to_qkv_mlp_proj")
    recorded_options = ("guidance",)

    def __init__(self, pipe, guidance: float = 4.0, max_sequence_length: int = 512, quantize_timesteps: bool = False,
                 **guidance_options):
        super().__init__(pipe, quantize_timesteps, **guidance_options)
        if self.guided and getattr(pipe.config, "is_distilled", False):
            raise ModelLoadError(f"this FLUX.2 [klein] checkpoint is step-distilled: it samples without classifier-free "
                                 f"guidance, so cfg_scale {self.cfg_scale} cannot apply. Use cfg_scale 1, or the base "
                                 "[klein] checkpoint (docs/models.md).")
        self.guidance = float(guidance)
        self.max_sequence_length = max_sequence_length

    # -- latent codec ------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return 4 * self.vae.config.latent_channels

    @property
    def vae_scale(self) -> int:
        return 2 * 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_statistics(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The batch-norm mean and standard deviation of the patchified latents, shaped ``[1, 128, 1, 1]``."""
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(like.device, like.dtype)
        return mean, std

    def vae_latents(self, latents: Tensor) -> Tensor:
        """The VAE's own latents ``unpatchify(z · std + mean)``, ``[B, 32, H/8, W/8]``."""
        z = latents.to(self.vae.dtype)
        mean, std = self.latent_statistics(z)
        b, c, h, w = z.shape
        return (z * std + mean).reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)

    def decode_chunk(self, latents: Tensor) -> Tensor:
        """``x = VAE(unpatchify(z · std + mean))``, mapped from [−1, 1] to [0, 1], float32."""
        z = self.vae_latents(latents).contiguous(memory_format=torch.channels_last)
        return (self.vae.decode(z).sample.float() / 2 + 0.5).clamp(0, 1).contiguous()

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """The inverse of :meth:`decode`: the VAE's posterior mean, patchified and normalised, float32."""
        x = (images.to(self.device, self.vae.dtype) * 2 - 1).contiguous(memory_format=torch.channels_last)
        mean_z = self.vae.encode(x).latent_dist.mode()
        b, c, h, w = mean_z.shape
        z = mean_z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        mean, std = self.latent_statistics(z)
        return ((z - mean) / std).float().contiguous()

    # -- schedule, text, velocity ------------------------------------------------------------
    def sampling_shift(self, height: int, width: int, steps: int | None = None) -> float:
        """``e^μ`` with FLUX.2's empirical μ (:func:`empirical_mu`) for this image and step count."""
        if self.recorded_shift is not None or steps is None:
            return super().sampling_shift(height, width, steps)
        return math.exp(empirical_mu((height // self.vae_scale) * (width // self.vae_scale), steps))

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> dict[str, Tensor]:
        """The text encoder's three hidden-state layers per token, ``max_sequence_length`` tokens per prompt."""
        embeds, _ = self.pipe.encode_prompt(list(prompts), device=self.device,
                                            max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": embeds}

    def model_velocity(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        b, c, h, w = x.shape
        dtype = self.dtype
        embeds = cond["prompt_embeds"].to(dtype)
        image_ids, text_ids = position_ids(h, w, embeds.shape[1], x.device)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((b,), self.guidance, device=x.device, dtype=torch.float32)
        out = self.network(
            hidden_states=x.to(dtype).reshape(b, c, h * w).transpose(1, 2),
            timestep=self.model_timestep(sigma.expand(b) if sigma.dim() == 0 else sigma).to(dtype),
            guidance=guidance,
            encoder_hidden_states=embeds,
            img_ids=image_ids.expand(b, -1, -1),
            txt_ids=text_ids.expand(b, -1, -1),
            return_dict=False,
        )[0]
        return out.transpose(1, 2).reshape(b, c, h, w)

    @staticmethod
    def comfyui_lora_key(peft_key: str) -> str:
        """ComfyUI 0.3.75 maps FLUX.2's double blocks from diffusers names (``transformer.<module>``) but knows its
        single blocks only by BFL's names: ``single_transformer_blocks.N.attn.to_qkv_mlp_proj`` is
        ``diffusion_model.single_blocks.N.linear1``."""
        module = peft_key.removeprefix("transformer.")
        if module.startswith("single_transformer_blocks.") and ".attn.to_qkv_mlp_proj." in module:
            index, rest = module.removeprefix("single_transformer_blocks.").split(".attn.to_qkv_mlp_proj.")
            return f"diffusion_model.single_blocks.{index}.linear1.{rest}"
        return f"transformer.{module}"

    @staticmethod
    def lora_module(name: str) -> str:
        if name.startswith("diffusion_model.single_blocks.") and name.endswith(".linear1"):
            index = name.removeprefix("diffusion_model.single_blocks.").removesuffix(".linear1")
            return f"single_transformer_blocks.{index}.attn.to_qkv_mlp_proj"
        return name.removeprefix("transformer.")

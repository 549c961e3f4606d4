"""diffusers Qwen-Image (``QwenImagePipeline``) behind :class:`FlowModelAdapter`.

- **Latents.** Qwen-Image's VAE is a Wan-style 3-D autoencoder: it takes ``[B, 16, 1, h, w]`` (one
  frame) and normalises each channel with its own statistics, ``z = (μ_VAE − mean_c) / std_c``. The
  adapter keeps the spatial ``[B, 16, h, w]`` layout and packs 2×2 patches into tokens, as for FLUX.
- **Time.** The transformer takes σ itself (it multiplies by 1000 inside) and predicts ``ε − x0``.
- **Text.** Qwen2.5-VL's last hidden states of the chat-templated prompt, less the 34 tokens of the
  template's system prompt. Prompts have their own lengths: the conditioning keeps them padded to
  ``max_sequence_length`` with a mask (``prompt_mask``); each pass trims the batch's common padding.
- **Guidance** (``cfg_scale`` s > 1, the pipeline's ``true_cfg_scale``, with a negative prompt): the
  guided velocity of each token is rescaled to the length of the conditional one,

      v = c · ‖v_cond‖ / ‖c‖,   c = v_uncond + s · (v_cond − v_uncond),

  with the norm over the token's 64 packed values.
- **σ grid.** The scheduler's e^μ shift, μ from 0.5 at 256 image tokens to 0.9 at 8192. The
  pipeline also stretches its grid so that the last step before 0 lands on 0.02 (``shift_terminal``);
  the trainer's grid keeps the plain shift (docs/models.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import FlowModelAdapter
from .flux import pack_latents, unpack_latents
from .registry import register_adapter


@register_adapter("QwenImagePipeline")
class QwenImageAdapter(FlowModelAdapter):
    family = "Qwen-Image"
    required_components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    block_lists = ("transformer_blocks",)
    vae_channels_last = False

    def __init__(self, pipe, max_sequence_length: int = 512, quantize_timesteps: bool = False, **guidance_options):
        super().__init__(pipe, quantize_timesteps, **guidance_options)
        self.max_sequence_length = max_sequence_length

    # -- latent codec ------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return self.vae.config.z_dim

    @property
    def vae_scale(self) -> int:
        return 2 ** len(self.vae.config.temperal_downsample)

    def latent_statistics(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The VAE's per-channel latent mean and standard deviation, shaped ``[1, C, 1, 1, 1]``."""
        cfg = self.vae.config
        mean, std = (torch.tensor(v, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
                     for v in (cfg.latents_mean, cfg.latents_std))
        return mean, std

    def decode_chunk(self, latents: Tensor) -> Tensor:
        """``x = VAE(z · std + mean)`` on one frame, mapped from [−1, 1] to [0, 1], float32."""
        z = latents.to(self.vae.dtype).unsqueeze(2)
        mean, std = self.latent_statistics(z)
        images = self.vae.decode(z * std + mean).sample[:, :, 0]
        return (images.float() / 2 + 0.5).clamp(0, 1).contiguous()

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """The inverse of :meth:`decode`: ``z = (μ_VAE(2x − 1) − mean) / std``, float32."""
        x = (images.to(self.device, self.vae.dtype) * 2 - 1).unsqueeze(2)
        posterior = self.vae.encode(x).latent_dist.mode()
        mean, std = self.latent_statistics(posterior)
        return ((posterior - mean) / std)[:, :, 0].float().contiguous()

    # -- text and guidance -------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> dict[str, Tensor]:
        """Qwen2.5-VL's hidden states of each prompt, padded to ``max_sequence_length`` rows, and their mask."""
        embeds, mask = self.pipe.encode_prompt(list(prompts), device=self.device,
                                               max_sequence_length=self.max_sequence_length)
        b, length, width = embeds.shape
        padded = embeds.new_zeros(b, self.max_sequence_length, width)
        padded[:, :length] = embeds
        full = torch.zeros(b, self.max_sequence_length, dtype=torch.bool, device=embeds.device)
        full[:, :length] = True if mask is None else mask.bool()
        return {"prompt_embeds": padded, "prompt_mask": full}

    def combine_guidance(self, v_cond: Tensor, v_uncond: Tensor, sigma: Tensor) -> Tensor:
        """True CFG, each token's guided velocity rescaled to the conditional one's length (module docstring)."""
        h, w = v_cond.shape[-2:]
        cond, guided = pack_latents(v_cond), pack_latents(super().combine_guidance(v_cond, v_uncond, sigma))
        rescaled = guided * (cond.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))
        return unpack_latents(rescaled, h, w)

    def model_velocity(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        b, _, h, w = x.shape
        dtype = self.dtype
        keep = int(cond["prompt_mask"].sum(1).max())  # the rows past every prompt's end are padding
        embeds, mask = cond["prompt_embeds"][:, :keep].to(dtype), cond["prompt_mask"][:, :keep]
        sigma = sigma.expand(b) if sigma.dim() == 0 else sigma
        out = self.network(
            hidden_states=pack_latents(x.to(dtype)),
            timestep=self.model_timestep(sigma).to(dtype),
            encoder_hidden_states=embeds,
            encoder_hidden_states_mask=None if bool(mask.all()) else mask,
            img_shapes=[[(1, h // 2, w // 2)]] * b,
            return_dict=False,
        )[0]
        return unpack_latents(out, h, w)

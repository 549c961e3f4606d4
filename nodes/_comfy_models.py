"""ComfyUI objects around a diffusers-layout FLUX pipeline: ``MODEL``, ``CLIP`` and ``VAE``.

* ``MODEL``: ComfyUI's own FLUX network (``comfy.ldm.flux``) built with the pipeline's exact sizes
  (ComfyUI's auto-detection assumes FLUX.1's 24 heads) and the diffusers weights converted by
  ComfyUI's own key map, so every stock sampler, LoRA and patch node works on it.
* ``CLIP``: the pipeline's text encoders behind the two calls ``CLIPTextEncode`` makes.
* ``VAE``: the pipeline's ``AutoencoderKL`` behind ``decode`` / ``encode`` as ``VAEDecode`` /
  ``VAEEncode`` call them (images ``[B, H, W, 3]`` in [0, 1], latents in VAE space).
"""

from __future__ import annotations

import math

import torch

import comfy.model_detection
import comfy.model_management
import comfy.model_patcher
import comfy.supported_models


def flux_unet_config(config) -> dict:
    """ComfyUI FLUX parameters from a diffusers ``FluxTransformer2DModel`` config."""
    return {
        "image_model": "flux", "in_channels": config.in_channels // 4, "out_channels": config.in_channels // 4,
        "vec_in_dim": config.pooled_projection_dim, "context_in_dim": config.joint_attention_dim,
        "hidden_size": config.num_attention_heads * config.attention_head_dim, "mlp_ratio": 4.0,
        "num_heads": config.num_attention_heads, "depth": config.num_layers,
        "depth_single_blocks": config.num_single_layers, "axes_dim": list(config.axes_dims_rope), "theta": 10000,
        "patch_size": 2, "qkv_bias": True, "guidance_embed": bool(config.guidance_embeds),
    }


def comfy_flux_model(transformer, vae_config, shift: float):
    """A ComfyUI ``MODEL`` (ModelPatcher) with ``transformer``'s weights, float32, σ-shift ``shift``."""
    model_config = comfy.supported_models.Flux(flux_unet_config(transformer.config))
    model_config.sampling_settings["shift"] = math.log(shift)  # ComfyUI's FLUX curve takes μ = ln s
    model_config.latent_format.scale_factor = float(vae_config.scaling_factor)
    model_config.latent_format.shift_factor = float(vae_config.shift_factor or 0.0)
    model_config.set_inference_dtype(torch.float32, None)
    weights = {k: v.detach().float().cpu() for k, v in transformer.state_dict().items()}
    converted = comfy.model_detection.convert_diffusers_mmdit(weights, "")
    model = model_config.get_model(converted, "")
    model.load_model_weights(converted, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


#: the ComfyUI MODEL builder of each adapter family this node pack supports: ``(transformer, vae config, shift)``
COMFY_MODEL_BUILDERS = {"FLUX.1": comfy_flux_model}


class PipelineTextEncoder:
    """``CLIP`` for ``CLIPTextEncode``: ``tokenize`` keeps the text, ``encode_from_tokens_scheduled`` encodes it."""

    def __init__(self, adapter):
        self.adapter = adapter

    def tokenize(self, text: str, **kwargs) -> dict:
        return {"text": text}

    def encode_from_tokens(self, tokens: dict, return_pooled: bool = False, return_dict: bool = False):
        cond = self.adapter.encode_text([tokens["text"]])
        embeds, pooled = cond["prompt_embeds"].float().cpu(), cond["pooled_prompt_embeds"].float().cpu()
        if return_dict:
            return {"cond": embeds, "pooled_output": pooled}
        return (embeds, pooled) if return_pooled else embeds

    def encode_from_tokens_scheduled(self, tokens: dict, unprojected: bool = False, add_dict: dict | None = None,
                                     show_pbar: bool = True) -> list:
        embeds, pooled = self.encode_from_tokens(tokens, return_pooled=True)
        return [[embeds, {"pooled_output": pooled, **(add_dict or {})}]]


class PipelineVAE:
    """``VAE`` for ``VAEDecode`` / ``VAEEncode``: VAE-space latents ↔ images ``[B, H, W, 3]`` in [0, 1]."""

    def __init__(self, vae):
        self.vae = vae

    def spacial_compression_decode(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    spacial_compression_encode = spacial_compression_decode

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        x = vae.decode(latents.to(vae.device, vae.dtype)).sample.float()
        return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        x = pixels[..., :3].permute(0, 3, 1, 2).to(vae.device, vae.dtype) * 2 - 1
        return vae.encode(x).latent_dist.mode().float().cpu()

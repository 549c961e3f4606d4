"""ComfyUI objects around a diffusers-layout pipeline: ``MODEL``, ``CLIP`` and ``VAE``, per model family.

* ``MODEL``: ComfyUI's own network of that family (FLUX.1: ``comfy.ldm.flux``; Qwen-Image:
  ``comfy.ldm.qwen_image``; Z-Image: ``comfy.ldm.lumina``; FLUX.2: ``comfy.ldm.flux`` in its FLUX.2
  form) built with the pipeline's exact sizes (ComfyUI's auto-detection assumes the released sizes)
  and the diffusers weights under ComfyUI's names, so every stock sampler, LoRA and patch node works
  on it.
* ``CLIP``: the pipeline's text encoders behind the calls ``CLIPTextEncode`` makes, giving the
  conditioning ComfyUI's model of that family reads.
* ``VAE``: the adapter's latent codec behind ``decode`` / ``encode`` as ``VAEDecode`` / ``VAEEncode``
  call them (images ``[B, H, W, 3]`` in [0, 1]). ComfyUI's latents are the family's latent format's
  "outside" space; its ``process_in`` maps them to the space the model (and the adapter) samples in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

import comfy.latent_formats
import comfy.model_detection
import comfy.model_management
import comfy.model_patcher
import comfy.supported_models
import comfy.utils

from mixgrpo.errors import ModelLoadError

from ._api import comfy_piece, comfyui_version


def unet_config(weights: dict, **sizes) -> dict:
    """ComfyUI's own reading of ``weights`` (``detect_unet_config``: every field the installed version's network
    takes), with the sizes it cannot read from weights (heads, rotary axes) given by the diffusers config."""
    detected = comfy_piece(comfy.model_detection, "detect_unet_config")(weights, "")
    if detected is None:
        raise ModelLoadError(f"ComfyUI {comfyui_version()} does not recognise this model's weights.")
    return {**detected, **sizes}


def model_patcher_class():
    """The patcher stock loaders build: ``CoreModelPatcher`` where ComfyUI has it (dynamic VRAM), else ``ModelPatcher``."""
    return getattr(comfy.model_patcher, "CoreModelPatcher", None) or comfy_piece(comfy.model_patcher, "ModelPatcher")


def patcher(model_config, weights: dict, unused: tuple[str, ...] = ()):
    """A ComfyUI ``MODEL`` of ``model_config`` holding ``weights`` (ComfyUI's names), float32; ``unused``: weights
    ComfyUI's network has but never reads for this family."""
    model_config.set_inference_dtype(torch.float32, None)
    try:
        model = model_config.get_model(weights, "")
    except TypeError as error:  # the network of this ComfyUI takes fields the config lacks (or lacks fields it has)
        raise ModelLoadError(f"ComfyUI {comfyui_version()}'s {type(model_config).__name__} network does not take the "
                             f"config the MixGRPO pack built for it: {error}") from None
    try:
        missing, unexpected = model.diffusion_model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # a size ComfyUI's network derives otherwise (e.g. a rounded MLP width)
        raise ModelLoadError(f"ComfyUI's {type(model_config).__name__} network does not take this folder's sizes: "
                             f"{str(error).splitlines()[1].strip()}") from None
    missing = [name for name in missing if name not in unused]
    if missing or unexpected:
        raise ModelLoadError(f"the weights do not fit ComfyUI's {type(model_config).__name__} model: missing "
                             f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}.")
    return model_patcher_class()(model, load_device=comfy.model_management.get_torch_device(),
                                 offload_device=comfy.model_management.unet_offload_device())


def fp32_weights(transformer) -> dict:
    return {k: v.detach().float().cpu() for k, v in transformer.state_dict().items()}


def renamed(weights: dict, names: dict) -> dict:
    """``weights`` under ComfyUI's names: ``names[key]`` is a name, or ``(name, (dim, offset, size))`` for a slice
    of a fused weight (q, k and v in one matrix), the slices concatenated by offset."""
    out, fused = {}, {}
    for key, value in weights.items():
        if key not in names:
            raise ModelLoadError(f"ComfyUI's key map has no name for the weight {key!r}.")
        target = names[key]
        if isinstance(target, str):
            out[target] = value
        else:
            fused.setdefault(target[0], []).append((target[1], value))
    for name, parts in fused.items():
        parts.sort(key=lambda part: part[0][1])
        out[name] = torch.cat([value for _, value in parts], dim=parts[0][0][0])
    return out


# -- FLUX.1 --------------------------------------------------------------------------------------
def flux_model(adapter, shift: float):
    """ComfyUI converts diffusers FLUX.1 weights itself; heads and rotary axes come from the diffusers config (its
    detection assumes FLUX.1's 24 heads)."""
    c = adapter.transformer.config
    convert = comfy_piece(comfy.model_detection, "convert_diffusers_mmdit")
    weights = convert(fp32_weights(adapter.transformer), "")
    model_config = comfy_piece(comfy.supported_models, "Flux")(unet_config(
        weights, num_heads=c.num_attention_heads, axes_dim=list(c.axes_dims_rope)))
    model_config.sampling_settings["shift"] = math.log(shift)  # ComfyUI's FLUX curve takes μ = ln s
    vae = adapter.vae.config
    model_config.latent_format.scale_factor = float(vae.scaling_factor)
    model_config.latent_format.shift_factor = float(vae.shift_factor or 0.0)
    return model_config, patcher(model_config, weights)


def flux_conditioning(adapter, text: str):
    cond = adapter.encode_text([text])
    return cond["prompt_embeds"], {"pooled_output": cond["pooled_prompt_embeds"].float().cpu()}


# -- Qwen-Image ----------------------------------------------------------------------------------
def qwen_image_model(adapter, shift: float):
    """ComfyUI's Qwen-Image network names its weights as diffusers does; its latents are the VAE's, normalised
    per channel by the latent format (Wan 2.1's, with the folder's statistics)."""
    c = adapter.transformer.config
    weights = fp32_weights(adapter.transformer)
    model_config = comfy_piece(comfy.supported_models, "QwenImage")(unet_config(
        weights, patch_size=c.patch_size, out_channels=c.out_channels, attention_head_dim=c.attention_head_dim,
        num_attention_heads=c.num_attention_heads, joint_attention_dim=c.joint_attention_dim,
        axes_dims_rope=tuple(c.axes_dims_rope)))
    model_config.sampling_settings["shift"] = math.log(shift)
    model_config.latent_format.latents_mean = torch.tensor(adapter.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    model_config.latent_format.latents_std = torch.tensor(adapter.vae.config.latents_std).view(1, -1, 1, 1, 1)
    return model_config, patcher(model_config, weights)


def masked_conditioning(adapter, text: str):
    """The prompt's own rows (its padding dropped): what ComfyUI's Qwen-Image and Z-Image models read."""
    cond = adapter.encode_text([text])
    return cond["prompt_embeds"][:, cond["prompt_mask"][0]], {}


# -- Z-Image -------------------------------------------------------------------------------------
def zimage_model(adapter, shift: float):
    """ComfyUI runs Z-Image as a Lumina 2 network with Z-Image's modulation; its own map names the weights."""
    c = adapter.transformer.config
    names = comfy_piece(comfy.utils, "z_image_to_diffusers")(
        {"n_layers": c.n_layers, "dim": c.dim, "n_refiner_layers": c.n_refiner_layers})
    weights = renamed(fp32_weights(adapter.transformer), names)
    model_config = comfy_piece(comfy.supported_models, "ZImage")(unet_config(
        weights, patch_size=c.all_patch_size[0], in_channels=c.in_channels, n_refiner_layers=c.n_refiner_layers,
        qk_norm=c.qk_norm, n_heads=c.n_heads, n_kv_heads=c.n_kv_heads, axes_dims=list(c.axes_dims),
        axes_lens=list(c.axes_lens), rope_theta=c.rope_theta, ffn_dim_multiplier=8.0 / 3.0, z_image_modulation=True,
        time_scale=c.t_scale, pad_tokens_multiple=32))
    model_config.sampling_settings["shift"] = shift
    vae = adapter.vae.config
    model_config.latent_format.scale_factor = float(vae.scaling_factor)
    model_config.latent_format.shift_factor = float(vae.shift_factor or 0.0)
    # Lumina 2's final norm: Z-Image's final layer norms without it (its own, weightless)
    return model_config, patcher(model_config, weights, unused=("norm_final.weight",))


# -- FLUX.2 --------------------------------------------------------------------------------------
def flux2_names(double_blocks: int, single_blocks: int) -> dict:
    """diffusers ``Flux2Transformer2DModel`` names → ComfyUI's (BFL's) FLUX.2 names."""
    names = {"x_embedder.weight": "img_in.weight", "context_embedder.weight": "txt_in.weight",
             "proj_out.weight": "final_layer.linear.weight",
             "norm_out.linear.weight": "final_layer.adaLN_modulation.1.weight"}
    for ours, theirs in (("timestep_embedder", "time_in"), ("guidance_embedder", "guidance_in")):
        names[f"time_guidance_embed.{ours}.linear_1.weight"] = f"{theirs}.in_layer.weight"
        names[f"time_guidance_embed.{ours}.linear_2.weight"] = f"{theirs}.out_layer.weight"
    for stream in ("double_stream_modulation_img", "double_stream_modulation_txt", "single_stream_modulation"):
        names[f"{stream}.linear.weight"] = f"{stream}.lin.weight"
    for i in range(double_blocks):
        ours, theirs = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for side, projections, out, norms, mlp in (
                ("img", ("to_q", "to_k", "to_v"), "to_out.0", ("norm_q", "norm_k"), "ff"),
                ("txt", ("add_q_proj", "add_k_proj", "add_v_proj"), "to_add_out", ("norm_added_q", "norm_added_k"),
                 "ff_context")):
            for slot, projection in enumerate(projections):
                names[f"{ours}.attn.{projection}.weight"] = (f"{theirs}.{side}_attn.qkv.weight", (0, slot, 1))
            names[f"{ours}.attn.{out}.weight"] = f"{theirs}.{side}_attn.proj.weight"
            names[f"{ours}.attn.{norms[0]}.weight"] = f"{theirs}.{side}_attn.norm.query_norm.scale"
            names[f"{ours}.attn.{norms[1]}.weight"] = f"{theirs}.{side}_attn.norm.key_norm.scale"
            names[f"{ours}.{mlp}.linear_in.weight"] = f"{theirs}.{side}_mlp.0.weight"
            names[f"{ours}.{mlp}.linear_out.weight"] = f"{theirs}.{side}_mlp.2.weight"
    for i in range(single_blocks):
        ours, theirs = f"single_transformer_blocks.{i}.attn", f"single_blocks.{i}"
        names |= {f"{ours}.to_qkv_mlp_proj.weight": f"{theirs}.linear1.weight",
                  f"{ours}.to_out.weight": f"{theirs}.linear2.weight",
                  f"{ours}.norm_q.weight": f"{theirs}.norm.query_norm.scale",
                  f"{ours}.norm_k.weight": f"{theirs}.norm.key_norm.scale"}
    return names


def flux2_model(adapter, shift: float):
    """ComfyUI 0.3.75 converts no diffusers FLUX.2 weights: :func:`flux2_names` does. diffusers keeps the final
    modulation as (scale, shift), BFL as (shift, scale)."""
    c = adapter.transformer.config
    weights = renamed(fp32_weights(adapter.transformer), flux2_names(c.num_layers, c.num_single_layers))
    scale, shift_ = weights["final_layer.adaLN_modulation.1.weight"].chunk(2)
    weights["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift_, scale])
    model_config = comfy_piece(comfy.supported_models, "Flux2")(unet_config(
        weights, num_heads=c.num_attention_heads, axes_dim=list(c.axes_dims_rope), mlp_ratio=c.mlp_ratio,
        theta=c.rope_theta))
    model_config.sampling_settings["shift"] = math.log(shift)
    return model_config, patcher(model_config, weights)


def flux2_conditioning(adapter, text: str):
    cond = adapter.encode_text([text])
    return cond["prompt_embeds"], {"pooled_output": None, "guidance": adapter.guidance}


@dataclass(frozen=True)
class ComfyFamily:
    """How one model family becomes ComfyUI objects: ``model(adapter, shift)`` → (model config, ``MODEL``);
    ``conditioning(adapter, text)`` → (the text rows, the conditioning's extra entries)."""

    model: Callable
    conditioning: Callable


#: the families Load MixGRPO Model builds
COMFY_FAMILIES = {"FLUX.1": ComfyFamily(flux_model, flux_conditioning),
                  "Qwen-Image": ComfyFamily(qwen_image_model, masked_conditioning),
                  "Z-Image": ComfyFamily(zimage_model, masked_conditioning),
                  "FLUX.2": ComfyFamily(flux2_model, flux2_conditioning)}


class PipelineTextEncoder:
    """``CLIP`` for ``CLIPTextEncode``: ``tokenize`` keeps the text, ``encode_from_tokens_scheduled`` encodes it."""

    def __init__(self, adapter, conditioning: Callable):
        self.adapter, self.conditioning = adapter, conditioning

    def tokenize(self, text: str, **kwargs) -> dict:
        return {"text": text}

    def encode_from_tokens(self, tokens: dict, return_pooled: bool = False, return_dict: bool = False):
        rows, extra = self.conditioning(self.adapter, tokens["text"])
        rows = rows.float().cpu()
        if return_dict:
            return {"cond": rows, **extra}
        return (rows, extra.get("pooled_output")) if return_pooled else rows

    def encode_from_tokens_scheduled(self, tokens: dict, unprojected: bool = False, add_dict: dict | None = None,
                                     show_pbar: bool = True) -> list:
        rows, extra = self.conditioning(self.adapter, tokens["text"])
        return [[rows.float().cpu(), {**extra, **(add_dict or {})}]]


class PipelineVAE:
    """``VAE`` for ``VAEDecode`` / ``VAEEncode``: ComfyUI's latents ↔ images ``[B, H, W, 3]`` in [0, 1], through the
    adapter's codec and the latent format's map between ComfyUI's latents and the sampling space."""

    def __init__(self, adapter, latent_format):
        self.adapter, self.latent_format = adapter, latent_format

    def spacial_compression_decode(self) -> int:
        return self.adapter.vae_scale

    spacial_compression_encode = spacial_compression_decode

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = self.latent_format.process_in(latents.float())
        images = self.adapter.decode((z[:, :, 0] if z.dim() == 5 else z).to(self.adapter.device))
        return images.permute(0, 2, 3, 1).cpu()

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        z = self.adapter.encode(pixels[..., :3].permute(0, 3, 1, 2).float())
        if getattr(self.latent_format, "latent_dimensions", 2) == 3:
            z = z.unsqueeze(2)
        return self.latent_format.process_out(z).float().cpu()

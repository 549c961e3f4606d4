"""The one interface every flow model offers to the trainer and the nodes.

Latents are always in the spatial layout ``[B, C, h, w]`` (C = 16, h = H/8 for FLUX and SD3), so
the core's rollout sees one shape whatever the model packs internally. Conditioning is a dict of
tensors batched along dim 0: encode once, cache it, free the text encoders.

**Classifier-free guidance** (``cfg_scale`` s ≠ 1): the policy's velocity is the guided one,

    v(x, σ, c) = v_θ(x, σ, ∅) + s · (v_θ(x, σ, c) − v_θ(x, σ, ∅)),

with ∅ the negative prompt (default: the empty prompt). ``encode_prompts`` then adds its encoding to
every row of the conditioning (keys prefixed ``negative_``), so cached conditioning keeps working
once the text encoders are freed, and ``velocity`` runs both branches as one doubled batch. The
rollout, the log-probabilities, the KL reference and every sampler see that one guided field.
FLUX.1-dev has distilled guidance instead (``FluxAdapter(guidance=…)``) and keeps s = 1.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..algorithm.schedule import flux_shift, image_seq_len, sigma_to_timestep
from ..errors import ModelLoadError

CPU_DECODE_BATCH = 8
#: the share of free GPU memory one VAE decode chunk may use (the rest stays for the allocator's slack)
GPU_DECODE_MEMORY_SHARE = 0.5
NEGATIVE = "negative_"  # conditioning keys of the negative prompt (classifier-free guidance)


def vae_width(config) -> int:
    """A VAE's full-resolution channel count (its decoder's last stage): ``block_out_channels[0]``, or for a
    Wan-style VAE (Qwen-Image's) ``base_dim · dim_mult[0]``."""
    if "block_out_channels" in config:
        return config["block_out_channels"][0]
    return config["base_dim"] * config["dim_mult"][0]


class FlowModelAdapter(ABC):
    """``encode_prompts`` → cond; ``velocity(x, σ, cond)`` → v ≈ ε − x0; ``decode`` → images in [0, 1].

    A subclass registers under its diffusers pipeline classes (:mod:`mixgrpo.models.registry`) and
    says, in the class attributes below, what differs per model.
    """

    #: the model family, as users name it (errors, docs)
    family: str = "flow model"
    #: the diffusers pipeline classes this adapter drives (set by ``register_adapter``)
    pipeline_classes: tuple[str, ...] = ()
    #: component folders a pipeline folder of this model must hold
    required_components: tuple[str, ...] = ("transformer", "vae", "scheduler")
    #: how the timestep handed to the transformer relates to σ: ``timestep = scale·σ``
    timestep_scale: float = 1.0
    #: model-side divisor of the pixel size (VAE down-sampling × patch size)
    resolution_multiple: int = 16
    #: adapter options a model folder's ``mixgrpo.json`` may record, beside its text length and guidance scale
    recorded_options: tuple[str, ...] = ()
    #: the transformer's modules a LoRA adapts (peft ``target_modules``)
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    #: whether the VAE's 2-D convolutions run channels-last (:meth:`decode`); a 3-D (video-style) VAE cannot
    vae_channels_last: bool = True

    def __init__(self, pipe, quantize_timesteps: bool = False, cfg_scale: float = 1.0, negative_prompt: str = ""):
        if not (cfg_scale > 0 and math.isfinite(cfg_scale)):
            raise ValueError(f"cfg_scale must be a positive number (1 = no classifier-free guidance); got {cfg_scale}")
        self.pipe = pipe
        self.transformer = pipe.transformer
        #: what runs the transformer: itself, or a wrapper around it (DDP); FSDP2 shards it in place
        self.network = self.transformer
        self.reference_network = None  # a frozen copy for a full fine-tune's KL (keep_reference_copy)
        self.vae = pipe.vae
        if self.vae_channels_last:  # channels-last convolutions: see decode(); ``.to(device/dtype)`` keeps the layout
            self.vae.to(memory_format=torch.channels_last)
        self.quantize_timesteps = quantize_timesteps
        self.cfg_scale = float(cfg_scale)
        self.negative_prompt = negative_prompt
        #: the dtype the transformer computes in on a GPU (autocast), or None: as the weights are
        self.autocast_dtype: torch.dtype | None = None
        #: the device the transformer computes on when its weights are offloaded elsewhere (else None)
        self.compute_device: torch.device | None = None
        #: conditioning rows by prompt, in CPU memory, once :meth:`cache_prompts` ran (else None)
        self.prompt_cache: dict[str, dict[str, Tensor]] | None = None

    @classmethod
    def option_names(cls) -> list[str]:
        """The options this model's adapter takes beside the pipeline: its and the base class's keyword parameters
        (``cfg_scale`` and ``quantize_timesteps`` are the trainer's options of their own)."""
        import inspect

        names = [*inspect.signature(cls.__init__).parameters, *inspect.signature(FlowModelAdapter.__init__).parameters]
        skip = ("self", "pipe", "cfg_scale", "quantize_timesteps", "guidance_options")
        return [name for name in dict.fromkeys(names) if name not in skip]

    @classmethod
    def check_options(cls, options: dict) -> None:
        """One clear error for an option this model's adapter does not take (before anything loads)."""
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            raise ModelLoadError(f"{cls.family} takes no model option {unknown[0]!r}; its options: "
                                 f"{', '.join(cls.option_names())} (--cfg-scale and --quantize-timesteps are options "
                                 "of their own).")

    # -- placement --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the transformer computes: its weights' device, unless its weights live elsewhere between uses
        (FSDP2's CPU offload keeps the shards in CPU memory and computes on the GPU: ``compute_device``)."""
        return self.compute_device or next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    def to(self, device=None, dtype=None) -> "FlowModelAdapter":
        self.pipe.to(device=device, dtype=dtype)
        return self

    def release_text_encoders(self) -> None:
        """Drop the text encoders once prompts are encoded and cached (saves their memory)."""
        for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
            if getattr(self.pipe, name, None) is not None:
                setattr(self.pipe, name, None)

    @property
    def text_encoders_released(self) -> bool:
        return all(getattr(self.pipe, name, None) is None for name in ("text_encoder", "text_encoder_2", "text_encoder_3"))

    @torch.no_grad()
    def cache_prompts(self, prompts: list[str], batch: int = 32, release: bool = True) -> int:
        """Encode every prompt of a run once, keep the rows in CPU memory, then drop the text encoders.

        :meth:`encode_prompts` then serves these prompts from the cache (moved to the model's device
        per batch), so neither the encoders (T5-XXL: about 9.5 GB in bf16) nor the embeddings of
        every prompt ever drawn stay on the GPU. Returns the cache's size in bytes.
        """
        cache = self.prompt_cache if self.prompt_cache is not None else {}
        todo = [p for p in dict.fromkeys(prompts) if p not in cache]
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            encoded = self.encode_prompts(chunk)
            for row, prompt in enumerate(chunk):
                cache[prompt] = {k: v[row:row + 1].cpu() for k, v in encoded.items()}
        self.prompt_cache = cache
        if release:
            self.release_text_encoders()
        return sum(t.numel() * t.element_size() for rows in cache.values() for t in rows.values())

    # -- shapes -----------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @classmethod
    def check_resolution(cls, height: int, width: int) -> None:
        """A clear error for an image size this model cannot take (before anything loads)."""
        m = cls.resolution_multiple
        if height % m or width % m or height <= 0 or width <= 0:
            raise ModelLoadError(
                f"{cls.family} needs a height and width divisible by {m} (VAE down-sampling × patch size); got "
                f"{height}×{width}. Try {max(m, round(height / m) * m)}×{max(m, round(width / m) * m)}.")

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(C, H/8, W/8)``; the size must divide by the VAE factor times the patch size."""
        self.check_resolution(height, width)
        return self.latent_channels, height // self.vae_scale, width // self.vae_scale

    #: the σ-grid shift the model was trained for when its folder records one (``mixgrpo.json``), else None
    recorded_shift: float | None = None

    def sampling_shift(self, height: int, width: int, steps: int | None = None) -> float:
        """The model's own σ-grid shift ``s`` for an image of this size sampled in ``steps`` steps
        (``σ = s·t / (1 + (s − 1)·t)``): the one its
        folder records, else its scheduler's: with dynamic shifting ``s = e^μ``, μ linear in the image's tokens
        between ``base_shift`` at ``base_image_seq_len`` and ``max_shift`` at ``max_image_seq_len``
        (FLUX: 0.5 at 256 tokens, 1.15 at 4096), else the scheduler's fixed ``shift``."""
        if self.recorded_shift is not None:
            return float(self.recorded_shift)
        config = self.pipe.scheduler.config
        if not config.get("use_dynamic_shifting", False):
            return float(config.get("shift", 1.0))
        tokens = image_seq_len(height, width, self.vae_scale, self.patch_size)
        return flux_shift(tokens, base_seq_len=config.get("base_image_seq_len", 256),
                          max_seq_len=config.get("max_image_seq_len", 4096), base_shift=config.get("base_shift", 0.5),
                          max_shift=config.get("max_shift", 1.15))

    #: latent pixels per side of one transformer token
    patch_size: int = 2

    @property
    def hidden_size(self) -> int:
        """The transformer's width (heads × head size)."""
        config = self.transformer.config
        return config.num_attention_heads * config.attention_head_dim

    def model_timestep(self, sigma: Tensor) -> Tensor:
        """The timestep the transformer sees for σ: the same function in rollout and training."""
        return sigma_to_timestep(sigma.float(), self.timestep_scale, self.quantize_timesteps)

    # -- the three calls --------------------------------------------------------------------
    @abstractmethod
    def encode_text(self, prompts: list[str]) -> dict[str, Tensor]:
        """The model's own text conditioning of ``prompts`` (one row each)."""

    @abstractmethod
    def model_velocity(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """One transformer pass: the velocity for ``cond`` as it is (no guidance)."""

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> dict[str, Tensor]:
        """Conditioning for :meth:`velocity`; with guidance, each row also carries the negative prompt's.

        Prompts cached by :meth:`cache_prompts` come from the cache; others need the text encoders.
        """
        if self.prompt_cache is not None:
            missing = [p for p in prompts if p not in self.prompt_cache]
            if not missing:
                rows = [self.prompt_cache[p] for p in prompts]
                return {k: torch.cat([r[k] for r in rows]).to(self.device) for k in rows[0]}
            if self.text_encoders_released:
                raise ModelLoadError(f"prompt {missing[0]!r} was not among the prompts encoded before the text "
                                     "encoders were released; pass it to cache_prompts with the others.")
        cond = self.encode_text(prompts)
        if self.guided:
            negative = self.encode_text([self.negative_prompt])
            cond.update({NEGATIVE + k: v.expand(len(prompts), *v.shape[1:]).clone() for k, v in negative.items()})
        return cond

    def velocity(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """The policy's velocity field: guided when ``cfg_scale`` ≠ 1 (module docstring), else one pass.

        On a GPU with :attr:`autocast_dtype` set (bf16 / fp16 training) it runs under autocast, in
        rollouts, updates and evaluations alike, so every pass sees the same numerics.
        """
        if self.autocast_dtype is not None and x.device.type == "cuda":
            with torch.autocast("cuda", dtype=self.autocast_dtype):
                return self.guided_velocity(x, sigma, cond)
        return self.guided_velocity(x, sigma, cond)

    def guided_velocity(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        positive = {k: v for k, v in cond.items() if not k.startswith(NEGATIVE)}
        if not self.guided:
            return self.model_velocity(x, sigma, positive)
        negative = {k[len(NEGATIVE):]: v for k, v in cond.items() if k.startswith(NEGATIVE)}
        if negative.keys() != positive.keys():
            raise ValueError("this model samples with classifier-free guidance (cfg_scale "
                             f"{self.cfg_scale}), but the conditioning has no negative prompt: encode it with "
                             "this adapter's encode_prompts")
        b = x.shape[0]
        sigma = sigma.expand(b) if sigma.dim() == 0 else sigma
        both = self.model_velocity(torch.cat([x, x]), torch.cat([sigma, sigma]),
                                   {k: torch.cat([positive[k], negative[k]]) for k in positive})
        return self.combine_guidance(both[:b], both[b:], sigma)

    def combine_guidance(self, v_cond: Tensor, v_uncond: Tensor, sigma: Tensor) -> Tensor:
        """The guided velocity from the two branches (module docstring); a model with its own rule overrides it."""
        return v_uncond + self.cfg_scale * (v_cond - v_uncond)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """``x = VAE(latents / scaling + shift)`` mapped from [−1, 1] to [0, 1], float32.

        The VAE runs channels-last (NHWC): its convolutions are most of a training iteration's fixed
        cost on a small model, and oneDNN/cuDNN run them about 1.5× faster in that layout (same values
        to float rounding). The weights are put in that layout once, in ``__init__``. On a CPU the
        latents are decoded ``CPU_DECODE_BATCH`` at a time: a small batch's activations stay in cache,
        which makes each image about 25 % cheaper than in batches of 32 (the same values).
        """
        chunk = self.decode_batch(latents)
        if len(latents) > chunk:
            return torch.cat([self.decode(part) for part in latents.split(chunk)])
        return self.decode_chunk(latents)

    def decode_chunk(self, latents: Tensor) -> Tensor:
        """:meth:`decode` of latents decoded at once (a model with its own latent codec overrides this and :meth:`encode`)."""
        cfg = self.vae.config
        z = latents.to(self.vae.dtype) / cfg.scaling_factor + (cfg.shift_factor or 0.0)
        z = z.contiguous(memory_format=torch.channels_last)
        return (self.vae.decode(z).sample.float() / 2 + 0.5).clamp(0, 1).contiguous()

    @property
    def vae_width(self) -> int:
        return vae_width(self.vae.config)

    def decode_batch(self, latents: Tensor) -> int:
        """Latents decoded at once: ``CPU_DECODE_BATCH`` on a CPU; on a GPU as many as fit in
        ``GPU_DECODE_MEMORY_SHARE`` of the free memory, at

            bytes per image ≈ 4 · C₀ · H · W · element size

        (``C₀`` the VAE's widest full-resolution channel count, ``H × W`` the image: the up-block's
        input, output and two convolution temporaries alive at once)."""
        if latents.device.type != "cuda":
            return CPU_DECODE_BATCH
        height, width = latents.shape[-2] * self.vae_scale, latents.shape[-1] * self.vae_scale
        per_image = 4 * self.vae_width * height * width * self.vae.dtype.itemsize
        free, _ = torch.cuda.mem_get_info(latents.device)
        return max(1, int(free * GPU_DECODE_MEMORY_SHARE // per_image))

    def sampling_batch(self, height: int, width: int, most: int = 64) -> int:
        """Images sampled at once without gradients (an evaluation): ``most`` on a CPU; on a GPU at most as many
        as fit in ``GPU_DECODE_MEMORY_SHARE`` of the free memory, one block's activations per image at

            bytes per image ≈ 34 · S · h · 2 · (2 with classifier-free guidance)

        (``S`` the image and text tokens, ``h`` the transformer's width; 34·S·h bytes is one 16-bit
        transformer block's activations per sample, Korthikanti et al. 2022)."""
        if self.device.type != "cuda":
            return most
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.batch_that_fits(height, width, free, most)

    def batch_that_fits(self, height: int, width: int, free_bytes: int, most: int = 64) -> int:
        """:meth:`sampling_batch` for ``free_bytes`` of free GPU memory."""
        patches = (height // self.vae_scale) * (width // self.vae_scale) // self.patch_size ** 2
        tokens = patches + getattr(self, "max_sequence_length", 0)
        per_image = 34 * tokens * self.hidden_size * (2 if self.cfg_scale > 1 else 1)
        return max(1, min(most, int(free_bytes * GPU_DECODE_MEMORY_SHARE // per_image)))

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """The inverse of :meth:`decode`: ``z = (μ_VAE(2x − 1) − shift)·scaling`` for images in [0, 1]
        (the posterior mean, the latents the model was trained on), float32."""
        cfg = self.vae.config
        x = (images.to(self.device, self.vae.dtype) * 2 - 1).contiguous(memory_format=torch.channels_last)
        mean = self.vae.encode(x).latent_dist.mode()
        return ((mean - (cfg.shift_factor or 0.0)) * cfg.scaling_factor).float().contiguous()

    def __call__(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor]) -> Tensor:
        return self.velocity(x, sigma, cond)

    #: the transformer's lists of repeated blocks: the units FSDP2 shards (then the root)
    block_lists: tuple[str, ...] = ("transformer_blocks", "single_transformer_blocks")

    def shard_units(self, transformer: torch.nn.Module | None = None) -> list[torch.nn.Module]:
        """The blocks of the transformer (or of a copy of it), each sharded on its own so only one is whole at a time."""
        transformer = self.transformer if transformer is None else transformer
        return [block for name in self.block_lists for block in getattr(transformer, name, ())]

    # -- LoRA --------------------------------------------------------------------------------
    def add_lora(self, rank: int = 16, alpha: float | None = None, target_modules=None, name: str = "mixgrpo"):
        """Attach a peft LoRA adapter to the transformer (only its weights then train)."""
        from peft import LoraConfig

        targets = list(target_modules or self.lora_targets)
        self.transformer.requires_grad_(False)
        self.transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=targets,
                                                init_lora_weights=True), adapter_name=name)
        params = [p for p in self.transformer.parameters() if p.requires_grad]
        for p in params:  # peft builds the adapter in the base weights' dtype: the trained copy stays fp32
            p.data = p.data.float()
        return params

    def keep_reference_copy(self, dtype: torch.dtype | None = None) -> None:
        """Freeze a copy of the transformer as it is now: the KL reference of a full fine-tune, in ``dtype``
        (the compute dtype: it is never trained), else the transformer's own."""
        import copy

        self.reference_network = copy.deepcopy(self.transformer).requires_grad_(False).eval().to(dtype=dtype)

    @staticmethod
    def comfyui_lora_key(peft_key: str) -> str:
        """The name ComfyUI's LoRA key map accepts for one of this model's LoRA tensors (peft naming in):
        ``transformer.<diffusers module path>.lora_A/B.weight`` for FLUX and SD3."""
        return peft_key if peft_key.startswith("transformer.") else f"transformer.{peft_key}"

    @staticmethod
    def lora_module(name: str) -> str:
        """The transformer module (its diffusers path) that a module name of either LoRA export stands for: the
        inverse of :meth:`comfyui_lora_key` on module names."""
        return name.removeprefix("transformer.")

    @contextlib.contextmanager
    def reference(self):
        """Run the reference model (the KL's base): the frozen copy if one is kept, else the LoRA switched off."""
        if self.reference_network is not None:
            network, self.network = self.network, self.reference_network
            try:
                yield self
            finally:
                self.network = network
            return
        self.transformer.disable_adapters()
        try:
            yield self
        finally:
            self.transformer.enable_adapters()

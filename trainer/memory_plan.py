"""Bytes each phase of a run needs per process, from parameter counts alone (no weights, no GPU).

The formulas behind ``python -m trainer.run --dry-run`` and ``python -m benchmarks.memory`` (which
derives and checks them: benchmarks/memory.py, docs/distributed.md). With ``P`` transformer
parameters, ``R`` LoRA parameters, ``B`` the largest block, ``N`` processes, ``f`` bytes per frozen
weight (2 in bf16, 4 in fp32); trained weights are fp32 with fp32 gradients and two AdamW moments:

=================  ===================  ==========  ============  ==========================
setting            weights              gradients   AdamW         transient
=================  ===================  ==========  ============  ==========================
LoRA, DDP          f·P + 4R             4R          8R            —
LoRA, FSDP2        (f·P + 4R)/N         4R/N        8R/N          2·2B (gathered bf16 blocks)
full, FSDP2        4P/N                 4P/N        8P/N          2·2B + 4B (one block's grad)
full + offload     0 (CPU: 16P/N)       0           0             2·2B + 4B
=================  ===================  ==========  ============  ==========================

Phases: **load** (on the main process, which reads the whole transformer before sharding and
broadcasts the shards, the VAE, the reward
models, the text encoders until the prompts are encoded), **decode** (``4·C₀·side²·f`` bytes per
image, in chunks of at most half the free memory), **update** (weights, AdamW, gradients, transient,
one transition's activations ``micro_batch·(blocks·S·h·2 + 34·S·h)`` with full checkpointing (others:
mixgrpo/models/checkpointing.py),
and AdamW's ``√v`` temporary, 4 bytes per trained parameter).

**Host memory** (:func:`host_memory`): a pipeline is read into CPU memory whole, then moved to the GPU,
so loading holds ``f·T + f·V`` (text encoders, VAE) plus, on a process that reads the transformer, its
weights (``4P`` trained whole, ``f·P`` frozen); the reward models load before it (at most their sum).
Under FSDP2 / HSDP with several processes only the main process reads the transformer. Offloaded
shards then stay in CPU memory (``16P/N``). A process's host peak is the larger of the two; the
Python and CUDA runtime of each process (a few GB) comes on top.
"""

from __future__ import annotations

GB = 1e9
#: parameters of each reward's model, kept in float32: OpenCLIP ViT-H-14 (986 M); rule-based and remote: none
REWARD_PARAMS = {"hpsv2": 986e6, "hpsv2.1": 986e6, "pickscore": 986e6, "shapes": 0, "http": 0}


def model_state(setting: str, sizes: dict, processes: int, frozen_bytes: int = 2) -> dict[str, float]:
    """Bytes per process of weights, gradients, optimizer states and transient gathered blocks (table above)."""
    P, R, B, N, f = sizes["params"], sizes["lora"], sizes["largest_block"], processes, frozen_bytes
    if setting == "LoRA, DDP":
        return {"weights": f * P + 4 * R, "gradients": 4 * R, "adamw": 8 * R, "transient": 0}
    if setting == "LoRA, FSDP2":
        return {"weights": (f * P + 4 * R) / N, "gradients": 4 * R / N, "adamw": 8 * R / N, "transient": 4 * B}
    if setting == "full, FSDP2":
        return {"weights": 4 * P / N, "gradients": 4 * P / N, "adamw": 8 * P / N, "transient": 8 * B * (N > 1)}
    return {"weights": 0, "gradients": 0, "adamw": 0, "transient": 8 * B, "cpu": 16 * P / N}  # offloaded


def trained_params(setting: str, sizes: dict, processes: int) -> float:
    return (sizes["lora"] if setting.startswith("LoRA") else sizes["params"]) / processes


def activations(side: int, micro_batch: int, checkpointing: str = "full", blocks: int = 57, hidden: int = 3072,
                text_tokens: int = 512) -> float:
    """Bytes of one transition's activations for ``micro_batch`` samples at ``side``² pixels (bf16), with
    ``checkpointing`` off, full or selective (mixgrpo/models/checkpointing.py; ``auto`` is planned as full)."""
    from mixgrpo.models.checkpointing import activation_bytes, checkpointed_count

    mode = "full" if checkpointing == "auto" else checkpointing
    tokens = (side // 16) ** 2 + text_tokens
    return activation_bytes(blocks, checkpointed_count(mode, blocks), tokens, hidden, micro_batch)


def decode_per_image(side: int, channels: int = 128, element: int = 2) -> float:
    """The VAE's full-resolution activations of one image: ``4·C₀·side²·element`` bytes."""
    return 4 * channels * side * side * element


def phases(setting: str, sizes: dict, processes: int, side: int, micro_batch: int, samples: int,
           reward_bytes: float, budget: float = 0.9 * 80 * GB, frozen_bytes: int = 2, text_tokens: int = 512,
           checkpointing: str = "full") -> dict[str, float]:
    """Bytes of each phase's peak on one process (module docstring); the decode is capped at half of what
    ``budget`` leaves beside the resident state, as the chunked decode is."""
    state = model_state(setting.replace("one process", "FSDP2"), sizes, processes, frozen_bytes)
    frozen = frozen_bytes * sizes["vae"] + reward_bytes
    whole = model_state("full, FSDP2" if setting.startswith("full") else "LoRA, DDP", sizes, 1, frozen_bytes)
    load = whole["weights"] + frozen + frozen_bytes * sizes["text_encoders"]
    resident = state["weights"] + state["adamw"] + frozen
    per_image = decode_per_image(side, sizes["vae_channels"], frozen_bytes)
    decode = resident + min(samples * per_image, 0.5 * max(0.0, budget - resident))
    act = activations(side, micro_batch, checkpointing, sizes["blocks"], sizes["hidden"], text_tokens)
    temporaries = 4 * trained_params(setting, sizes, processes) * (state["adamw"] > 0)
    update = resident + state["gradients"] + state["transient"] + act + temporaries
    return {**state, "activations": act, "temporaries": temporaries, "load": load, "decode": decode,
            "update": update, "gpu": max(load, decode, update)}


def host_memory(setting: str, sizes: dict, processes: int, reward_bytes: float, frozen_bytes: int = 2,
                reads_transformer: bool = True) -> float:
    """Bytes of CPU memory one process peaks at (module docstring, "Host memory")."""
    f, P = frozen_bytes, sizes["params"]
    transformer = (4 if setting.startswith("full") else f) * P if reads_transformer else 0
    load = max(reward_bytes, transformer + f * (sizes["text_encoders"] + sizes["vae"]))
    return max(load, model_state(setting.replace("one process", "FSDP2"), sizes, processes, frozen_bytes).get("cpu", 0))


def host_memory_per_node(setting: str, sizes: dict, processes: int, per_node: int, reward_bytes: float,
                         frozen_bytes: int = 2) -> dict[str, float]:
    """Host bytes of the main process, of each other process, and of a node of ``per_node`` processes (the main
    process's node: the others hold less)."""
    main_only = "FSDP2" in setting and processes > 1  # the others build the transformer on the meta device
    main = host_memory(setting, sizes, processes, reward_bytes, frozen_bytes)
    other = host_memory(setting, sizes, processes, reward_bytes, frozen_bytes, reads_transformer=not main_only)
    return {"host_main": main, "host_other": other, "host_node": main + (min(per_node, processes) - 1) * other}


def transformer_counts(transformer, lora_rank: int, targets=None, adapter=None) -> dict:
    """Parameter counts of a transformer (built on the meta device: no weights) and of its LoRA; ``adapter`` (a
    :class:`~mixgrpo.models.base.FlowModelAdapter` class, FLUX's by default) names its blocks, width and LoRA targets."""
    import torch

    if adapter is None:
        from mixgrpo.models.flux import FluxAdapter as adapter
    targets = targets or adapter.lora_targets
    blocks = [b for name in adapter.block_lists for b in getattr(transformer, name, ())]
    lora = sum(lora_rank * (m.in_features + m.out_features) for name, m in transformer.named_modules()
               if isinstance(m, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets))
    config = transformer.config
    hidden = config.dim if "dim" in config else config.num_attention_heads * config.attention_head_dim
    return {"params": sum(p.numel() for p in transformer.parameters()), "lora": lora, "blocks": len(blocks),
            "largest_block": max(sum(p.numel() for p in b.parameters()) for b in blocks), "hidden": hidden}


def folder_sizes(path, lora_rank: int) -> dict:
    """The counts of a diffusers pipeline folder's transformer, VAE and text encoders, from their config files."""
    import json
    from pathlib import Path

    import diffusers
    import torch
    import transformers

    path = Path(path)
    index = json.loads((path / "model_index.json").read_text())

    def build(component: str):
        library, name = index[component]
        cls = getattr(diffusers if library == "diffusers" else transformers, name)
        with torch.device("meta"):
            if library == "diffusers":
                return cls.from_config(cls.load_config(str(path / component)))
            return cls(transformers.AutoConfig.from_pretrained(str(path / component)))

    from mixgrpo.models.base import vae_width
    from mixgrpo.models.registry import adapter_class

    sizes = transformer_counts(build("transformer"), lora_rank, adapter=adapter_class(index["_class_name"]))
    vae = build("vae")
    encoders = [c for c in ("text_encoder", "text_encoder_2", "text_encoder_3") if index.get(c) and index[c][0]]
    return sizes | {"vae": sum(p.numel() for p in vae.parameters()), "vae_channels": vae_width(vae.config),
                    "text_encoders": sum(sum(p.numel() for p in build(c).parameters()) for c in encoders)}

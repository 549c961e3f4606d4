"""What a run leaves behind: the LoRA (diffusers/peft format) or the fine-tuned transformer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from mixgrpo.models.base import FlowModelAdapter


def lora_layers(model, weights: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The LoRA's tensors in peft's naming, from the transformer or from gathered ``weights`` (FSDP2)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model.transformer, state_dict=weights, adapter_name="mixgrpo")


def save_lora(model, folder: Path, rank: int, alpha: float, weights: dict[str, torch.Tensor] | None = None) -> Path:
    """``pytorch_lora_weights.safetensors`` (diffusers ``load_lora_weights`` format) + ``adapter_config.json``.

    ``weights``: the transformer's gathered trained weights when it is sharded (else read from it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    layers = lora_layers(model, weights)
    type(model.pipe).save_lora_weights(str(folder), transformer_lora_layers=layers)
    save_comfyui_lora(layers, folder / "comfyui_lora.safetensors", alpha, model.comfyui_lora_key, model.family)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": alpha, "family": model.family,
                                                             "target_modules": list(model.lora_targets)}))
    return folder


def comfyui_lora_state_dict(peft_layers: dict[str, torch.Tensor], alpha: float,
                            key=FlowModelAdapter.comfyui_lora_key) -> dict[str, torch.Tensor]:
    """diffusers/peft LoRA keys → the names ComfyUI's key map accepts (``key``: the model adapter's
    ``comfyui_lora_key``; by default FLUX's and SD3's ``transformer.<module>.lora_A/B.weight``) + ``.alpha``.

    ComfyUI reads the scale from ``<name>.alpha`` (scale = alpha / rank); without it it assumes alpha = rank.
    """
    out, modules = {}, set()
    for peft_key, value in peft_layers.items():
        name = key(peft_key)
        out[name] = value.detach().contiguous().cpu()
        modules.add(name.rsplit(".lora_", 1)[0])
    for module in sorted(modules):
        out[f"{module}.alpha"] = torch.tensor(float(alpha))
    return out


def save_comfyui_lora(layers: dict[str, torch.Tensor], path: Path, alpha: float,
                      key=FlowModelAdapter.comfyui_lora_key, family: str | None = None) -> Path:
    """The ComfyUI export; its metadata records the architecture (``family``) for the loader's check."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "comfyui-lora", "alpha": str(alpha)} | ({"family": family} if family else {})
    save_file(comfyui_lora_state_dict(layers, alpha, key), str(path), metadata=metadata)
    return path


def save_transformer(model, folder: Path, weights: dict[str, torch.Tensor] | None = None) -> Path:
    """The whole fine-tuned transformer in diffusers layout (``config.json`` + safetensors), loadable by
    ``from_pretrained``; one ``diffusion_pytorch_model.safetensors``, or shards with an index past 10 GB.

    ``weights``: the gathered state dict when the transformer is sharded (else read from it).
    """
    from huggingface_hub import save_torch_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    if weights is None:
        model.transformer.save_pretrained(str(folder), max_shard_size="10GB")
        return folder
    model.transformer.save_config(str(folder))
    save_torch_state_dict(weights, str(folder), filename_pattern="diffusion_pytorch_model{suffix}.safetensors",
                          max_shard_size="10GB")
    return folder


def export_to_comfyui(result: Path, comfyui: Path, run_name: str, full: bool) -> Path:
    """Copy the result into a ComfyUI models tree (``models/loras`` or ``models/diffusion_models``).

    ComfyUI loads one file per model: a transformer saved in shards is written there as one.
    """
    if full:
        target = Path(comfyui) / "models" / "diffusion_models" / f"{run_name}.safetensors"
        source = result / "diffusion_pytorch_model.safetensors"
    else:
        target = Path(comfyui) / "models" / "loras" / f"{run_name}.safetensors"
        source = result / "comfyui_lora.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        shutil.copyfile(source, target)
    else:
        from safetensors.torch import load_file, save_file

        index = json.loads((result / "diffusion_pytorch_model.safetensors.index.json").read_text())
        merged = {}
        for shard in sorted(set(index["weight_map"].values())):
            merged.update(load_file(str(result / shard)))
        save_file(merged, str(target))
    return target


def load_lora_into(model, folder: Path) -> None:
    """Load a run's LoRA onto a freshly loaded model (for evaluation): one clear error when it was trained on
    another architecture (recorded in ``adapter_config.json``) or when any of its modules is not in the model."""
    from safetensors import safe_open

    from mixgrpo.models.lora_merge import check_lora_family, check_lora_modules

    settings = folder / "adapter_config.json"
    if settings.is_file():
        check_lora_family(json.loads(settings.read_text()).get("family"), model.family)
    with safe_open(str(folder / "pytorch_lora_weights.safetensors"), framework="pt") as reader:
        modules = {model.lora_module(k.rsplit(".lora_", 1)[0]) for k in reader.keys() if ".lora_" in k}
    check_lora_modules(modules, {name for name, _ in model.transformer.named_modules()}, model.family)
    model.pipe.load_lora_weights(str(folder), adapter_name="mixgrpo")
    torch.nn.Module.eval(model.transformer)

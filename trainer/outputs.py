"""What a run leaves behind: the LoRA (diffusers/peft format) or the fine-tuned transformer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


def save_lora(model, folder: Path, rank: int, alpha: float) -> Path:
    """``pytorch_lora_weights.safetensors`` (diffusers ``load_lora_weights`` format) + ``adapter_config.json``."""
    from peft.utils import get_peft_model_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    layers = get_peft_model_state_dict(model.transformer, adapter_name="mixgrpo")
    type(model.pipe).save_lora_weights(str(folder), transformer_lora_layers=layers)
    save_comfyui_lora(model, folder / "comfyui_lora.safetensors", alpha)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": alpha,
                                                             "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}))
    return folder


def comfyui_lora_state_dict(peft_layers: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """diffusers/peft LoRA keys → the ``transformer.<module>.lora_A/B.weight`` + ``.alpha`` layout.

    ComfyUI's FLUX/SD3 LoRA key map accepts ``transformer.<diffusers module path>`` names, and reads
    the scale from ``<name>.alpha`` (scale = alpha / rank); without it ComfyUI assumes alpha = rank.
    """
    out, modules = {}, set()
    for key, value in peft_layers.items():
        name = key if key.startswith("transformer.") else f"transformer.{key}"
        out[name] = value.detach().contiguous().cpu()
        modules.add(name.rsplit(".lora_", 1)[0])
    for module in sorted(modules):
        out[f"{module}.alpha"] = torch.tensor(float(alpha))
    return out


def save_comfyui_lora(model, path: Path, alpha: float) -> Path:
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    layers = get_peft_model_state_dict(model.transformer, adapter_name="mixgrpo")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(comfyui_lora_state_dict(layers, alpha), str(path), metadata={"format": "comfyui-lora", "alpha": str(alpha)})
    return path


def save_transformer(model, folder: Path) -> Path:
    """The whole fine-tuned transformer as one ``diffusion_pytorch_model.safetensors`` (+ config)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.transformer.save_pretrained(str(folder), max_shard_size="100GB")
    return folder


def export_to_comfyui(result: Path, comfyui: Path, run_name: str, full: bool) -> Path:
    """Copy the result into a ComfyUI models tree (``models/loras`` or ``models/diffusion_models``)."""
    if full:
        target = Path(comfyui) / "models" / "diffusion_models" / f"{run_name}.safetensors"
        source = result / "diffusion_pytorch_model.safetensors"
    else:
        target = Path(comfyui) / "models" / "loras" / f"{run_name}.safetensors"
        source = result / "comfyui_lora.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def load_lora_into(model, folder: Path) -> None:
    """Load a run's LoRA onto a freshly loaded model (for evaluation)."""
    model.pipe.load_lora_weights(str(folder), adapter_name="mixgrpo")
    torch.nn.Module.eval(model.transformer)

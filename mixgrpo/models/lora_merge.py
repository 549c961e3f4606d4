"""Merge a LoRA file into a transformer's weights: ``W ← W + strength · (α / r) · B·A``.

Reads both layouts the trainer writes: ``comfyui_lora.safetensors`` (``transformer.<module>.lora_A
/ lora_B.weight`` plus ``<module>.alpha``) and diffusers' ``pytorch_lora_weights.safetensors`` (the
same names without ``.alpha``: α = r, scale 1). Files are read with safetensors only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelLoadError

RUN_LORA_FILES = ("lora/comfyui_lora.safetensors", "comfyui_lora.safetensors",
                  "lora/pytorch_lora_weights.safetensors", "pytorch_lora_weights.safetensors")


def find_lora_file(path: str | Path) -> Path:
    """A LoRA ``.safetensors`` file, or the LoRA inside a trainer run folder (or its ``lora/``)."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ModelLoadError(f"{path}: only .safetensors LoRA files are loaded (no pickled files).")
        return path
    for name in RUN_LORA_FILES:
        if (path / name).is_file():
            return path / name
    raise ModelLoadError(f"no LoRA found at {path}: expected a .safetensors file or a trainer run folder "
                         f"holding one of {', '.join(RUN_LORA_FILES)}.")


def merge_lora(weights: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], strength: float = 1.0,
               prefix: str = "transformer.") -> dict[str, torch.Tensor]:
    """A copy of ``weights`` (module names without ``prefix``) with every LoRA pair of ``lora`` merged in."""
    merged = dict(weights)
    pairs = sorted({k[: -len(".lora_A.weight")] for k in lora if k.endswith(".lora_A.weight")})
    if not pairs:
        raise ModelLoadError("the LoRA file holds no '<module>.lora_A.weight' / '.lora_B.weight' pairs.")
    for name in pairs:
        module = name[len(prefix):] if name.startswith(prefix) else name
        target = f"{module}.weight"
        if target not in merged:
            raise ModelLoadError(f"LoRA module {module!r} is not in this model: was the LoRA trained on another model?")
        down, up = lora[f"{name}.lora_A.weight"].float(), lora[f"{name}.lora_B.weight"].float()
        rank = down.shape[0]
        alpha = float(lora[f"{name}.alpha"]) if f"{name}.alpha" in lora else float(rank)
        base = merged[target]
        merged[target] = (base.float() + strength * (alpha / rank) * (up @ down)).to(base.dtype)
    return merged


def load_and_merge(weights: dict[str, torch.Tensor], path: str | Path, strength: float = 1.0) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return merge_lora(weights, load_file(str(find_lora_file(path))), strength)

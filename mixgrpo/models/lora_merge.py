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


def check_lora_family(lora_family: str | None, family: str) -> None:
    """One clear error when a LoRA's recorded architecture (the trainer records it) is not the model's."""
    if lora_family is not None and lora_family != family:
        raise ModelLoadError(f"this LoRA was trained on {lora_family}, and the model is {family}: a LoRA loads only onto "
                             "the architecture it was trained on.")


def check_lora_modules(modules, present, family: str) -> None:
    """One clear error when any of a LoRA's ``modules`` is not among the model's (``present``)."""
    missing = sorted(set(modules) - set(present))
    if missing:
        raise ModelLoadError(f"LoRA module {missing[0]!r} is not in this {family} model ({len(missing)} of "
                             f"{len(set(modules))} modules are not): was the LoRA trained on another model?")


def merge_lora(weights: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], strength: float = 1.0,
               module=lambda name: name.removeprefix("transformer."), family: str = "flow") -> dict[str, torch.Tensor]:
    """A copy of ``weights`` (diffusers module names) with every LoRA pair of ``lora`` merged in; ``module`` maps a
    file's module name to the transformer's (the adapter's ``lora_module``: either export's naming)."""
    merged = dict(weights)
    pairs = sorted({k[: -len(".lora_A.weight")] for k in lora if k.endswith(".lora_A.weight")})
    if not pairs:
        raise ModelLoadError("the LoRA file holds no '<module>.lora_A.weight' / '.lora_B.weight' pairs.")
    check_lora_modules({module(name) for name in pairs}, {k.removesuffix(".weight") for k in merged}, family)
    for name in pairs:
        target = f"{module(name)}.weight"
        down, up = lora[f"{name}.lora_A.weight"].float(), lora[f"{name}.lora_B.weight"].float()
        rank = down.shape[0]
        alpha = float(lora[f"{name}.alpha"]) if f"{name}.alpha" in lora else float(rank)
        base = merged[target]
        merged[target] = (base.float() + strength * (alpha / rank) * (up @ down)).to(base.dtype)
    return merged


def load_and_merge(weights: dict[str, torch.Tensor], path: str | Path, strength: float = 1.0,
                   adapter=None) -> dict[str, torch.Tensor]:
    """:func:`merge_lora` of the LoRA at ``path`` (a file or a run folder) for the model of ``adapter`` (a
    :class:`~mixgrpo.models.base.FlowModelAdapter` or its class; None: FLUX's naming, no architecture check)."""
    from safetensors import safe_open

    with safe_open(str(find_lora_file(path)), framework="pt") as reader:  # one read: the tensors and the record
        recorded = (reader.metadata() or {}).get("family")
        lora = {key: reader.get_tensor(key) for key in reader.keys()}
    if adapter is None:
        return merge_lora(weights, lora, strength)
    check_lora_family(recorded, adapter.family)
    return merge_lora(weights, lora, strength, module=adapter.lora_module, family=adapter.family)

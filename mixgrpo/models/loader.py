"""Load a diffusers-layout folder (or a hub id on a user's machine) as a :class:`FlowModelAdapter`.

The pipeline class named in ``model_index.json`` picks the adapter (:mod:`mixgrpo.models.registry`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ModelLoadError
from .base import FlowModelAdapter
from .registry import adapter_class

def read_model_index(path: str | Path) -> dict:
    folder = Path(path)
    index = folder / "model_index.json"
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist. Pass the folder of a diffusers pipeline "
                             "(it holds model_index.json, transformer/, vae/, text encoders and tokenizers).")
    if not index.is_file():
        raise ModelLoadError(f"{folder} has no model_index.json: it is not a diffusers pipeline folder. "
                             "Save one with pipeline.save_pretrained(folder) or download the full repository.")
    return json.loads(index.read_text())


def check_model_folder(path: str | Path) -> dict:
    """The folder's ``model_index.json`` once it is known to hold a supported, complete pipeline (no weights read)."""
    index = read_model_index(path)
    pipeline_class = index.get("_class_name")
    adapter = adapter_class(pipeline_class, where=str(path))
    missing = [c for c in adapter.required_components if not (Path(path) / c).is_dir()]
    if missing:
        raise ModelLoadError(f"{path} is incomplete: missing component folder(s) {missing} of a {pipeline_class}. "
                             "Copy the whole pipeline repository, not only the transformer weights.")
    return index


def model_adapter_class(path: str | Path) -> type[FlowModelAdapter]:
    """The adapter a folder's pipeline class registered (the folder checked, no weights read)."""
    return adapter_class(check_model_folder(path)["_class_name"], where=str(path))


def load_flow_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                    transformer_dtype: torch.dtype | None = None, transformer_on_meta: bool = False,
                    **adapter_options) -> FlowModelAdapter:
    """Load the pipeline at ``path`` and wrap it; clear errors for missing or unsupported folders.

    Every component loads in ``dtype``, the transformer in ``transformer_dtype`` when given (a full
    fine-tune keeps its trained weights in float32 while the frozen parts compute in bf16), each
    straight from its files in that dtype. ``transformer_on_meta``: the transformer is built from its
    config on the meta device, no weight read (a sharded run's other processes, which receive their
    shards from the main process once the model is sharded).
    """
    index = check_model_folder(path)
    pipeline_class = index["_class_name"]
    adapter_type = adapter_class(pipeline_class)
    from .embedded import read_settings

    settings = read_settings(path)  # a model trained here records its text length and guidance scale
    for key in ("max_sequence_length", "cfg_scale", *adapter_type.recorded_options):
        if key in settings:
            adapter_options.setdefault(key, settings[key])
    import diffusers

    components = {}
    transformer_class = getattr(diffusers, index["transformer"][1])
    if transformer_on_meta:
        with torch.device("meta"):
            components["transformer"] = transformer_class.from_config(transformer_class.load_config(
                str(Path(path) / "transformer"))).to(transformer_dtype or dtype)
    elif transformer_dtype is not None and transformer_dtype != dtype:
        components["transformer"] = transformer_class.from_pretrained(str(path), subfolder="transformer",
                                                                      torch_dtype=transformer_dtype)
    pipeline = getattr(diffusers, pipeline_class).from_pretrained(str(path), torch_dtype=dtype, **components)
    for component in pipeline.components.values():  # a transformer on the meta device stays there
        if isinstance(component, torch.nn.Module) and not (transformer_on_meta and component is pipeline.transformer):
            component.to(device)
    adapter = adapter_type(pipeline, **adapter_options)
    adapter.recorded_shift = settings.get("shift")
    return adapter

"""Load MixGRPO Model: MODEL, CLIP and VAE from a diffusers-layout folder (FLUX.1, FLUX.2, Qwen-Image, Z-Image),
with a trainer LoRA."""

from __future__ import annotations

from pathlib import Path

from mixgrpo.errors import ModelLoadError
from mixgrpo.models import load_flow_model
from mixgrpo.models.loader import model_adapter_class
from mixgrpo.models.embedded import EMBEDDED_DIR
from mixgrpo.models.lora_merge import load_and_merge

from ._api import CATEGORY, folder_paths, io
from ._comfy_models import COMFY_FAMILIES, PipelineTextEncoder, PipelineVAE

EMBEDDED = "embedded (shapes-flux-tiny)"
NO_LORA = "none"


def model_choices() -> list[str]:
    folders = []
    for root in folder_paths.get_folder_paths("diffusers"):
        if Path(root).is_dir():
            folders += sorted(p.name for p in Path(root).iterdir() if (p / "model_index.json").is_file())
    return [EMBEDDED, *folders]


def resolve_model(name: str) -> Path:
    if name == EMBEDDED:
        return EMBEDDED_DIR
    for root in folder_paths.get_folder_paths("diffusers"):
        if (Path(root) / name / "model_index.json").is_file():
            return Path(root) / name
    path = Path(name)
    if (path / "model_index.json").is_file():
        return path
    raise ModelLoadError(f"model folder {name!r} not found: put diffusers-layout folders (with model_index.json) "
                         f"in ComfyUI's models/diffusers/.")


def load_pipeline_for_comfy(model_name: str, lora: str, strength: float):
    """``(MODEL, CLIP, VAE)`` for the folder ``model_name`` with ``lora`` (path or None) merged at ``strength``."""
    path = resolve_model(model_name)
    family = model_adapter_class(path).family
    if family not in COMFY_FAMILIES:  # before any weight is read
        raise ModelLoadError(f"{path} holds a {family} pipeline; Load MixGRPO Model builds {', '.join(COMFY_FAMILIES)} "
                             f"models. Load {family} with ComfyUI's stock loaders; the MixGRPO Sampler samples it.")
    adapter = load_flow_model(path)
    if lora:
        merged = load_and_merge(adapter.transformer.state_dict(), lora, strength, adapter)
        adapter.transformer.load_state_dict(merged)
    comfy = COMFY_FAMILIES[family]
    # the σ-grid shift the MODEL samples with: the folder's recorded one, else the model's own at 1024² and 28 steps
    # (ComfyUI's ModelSamplingFlux / ModelSamplingSD3 nodes change it)
    model_config, model = comfy.model(adapter, adapter.sampling_shift(1024, 1024, 28))
    return model, PipelineTextEncoder(adapter, comfy.conditioning), PipelineVAE(adapter, model_config.latent_format)


class LoadMixGRPOModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LoadMixGRPOModel",
            display_name="Load MixGRPO Model",
            category=f"{CATEGORY}/loaders",
            description="MODEL, CLIP and VAE from a diffusers-layout folder of FLUX.1, FLUX.2, Qwen-Image or Z-Image (the "
                        "embedded shapes model, or a folder in models/diffusers), with an optional LoRA from the "
                        "MixGRPO trainer.",
            inputs=[
                io.Combo.Input("model", options=model_choices(), default=EMBEDDED,
                               tooltip="A diffusers pipeline folder from models/diffusers (FLUX.1, FLUX.2, Qwen-Image, "
                                       "Z-Image), or the embedded model."),
                io.Combo.Input("lora_name", options=[NO_LORA, *folder_paths.get_filename_list("loras")],
                               default=NO_LORA, tooltip="A LoRA from models/loras (e.g. exported by the trainer)."),
                io.String.Input("lora_path", default="", optional=True,
                                tooltip="Or a trainer run folder / LoRA file path (overrides lora_name)."),
                io.Float.Input("strength", default=1.0, min=-4.0, max=4.0, step=0.05, tooltip="LoRA strength."),
            ],
            outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()],
        )

    @classmethod
    def execute(cls, model, lora_name, strength, lora_path="") -> io.NodeOutput:
        lora = lora_path.strip() or (None if lora_name == NO_LORA else folder_paths.get_full_path_or_raise("loras", lora_name))
        return io.NodeOutput(*load_pipeline_for_comfy(model, lora, strength))

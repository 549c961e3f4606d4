"""The one module that touches ComfyUI's APIs: its V3 node schema and the sampler plumbing.

Every node imports ComfyUI names from here, so a rename in ``comfy_api`` or ``comfy.samplers``
touches this file alone. Nothing here does maths: it adapts ComfyUI's objects to :mod:`mixgrpo`.
"""

from __future__ import annotations

import math
import os

from comfy_api.latest import ComfyExtension, io, ui  # noqa: F401  (re-exported for the nodes)

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import folder_paths

from mixgrpo.rewards.weights import add_search_dir

CATEGORY = "MixGRPO"
REWARD_MODELS = "reward_models"  # ComfyUI's model folder name for reward weights


def register_reward_folders() -> list[str]:
    """Hand every folder ComfyUI knows for ``reward_models`` to the core's weight search.

    ``models/reward_models/`` is added to ComfyUI's folders even when ``extra_model_paths.yaml``
    named ``reward_models`` first (ComfyUI reads that file before it loads any pack). Called at the
    entry point and again on every score, so folders another pack adds later are searched too.
    """
    folder_paths.add_model_folder_path(REWARD_MODELS, os.path.join(folder_paths.models_dir, REWARD_MODELS))
    folders = folder_paths.get_folder_paths(REWARD_MODELS)
    for folder in folders:
        add_search_dir(folder)
    return folders


def comfyui_version() -> str:
    """The installed ComfyUI's version (``comfyui_version.py``), as errors name it."""
    try:
        from comfyui_version import __version__
    except ImportError:
        return "(version unknown)"
    return __version__


class MissingComfyPiece(RuntimeError):
    """The installed ComfyUI lacks something the pack uses (a renamed or removed attribute)."""


def comfy_piece(module, name: str):
    """``module.name`` of the installed ComfyUI, or one error that names the version and the missing piece."""
    try:
        return getattr(module, name)
    except AttributeError:
        raise MissingComfyPiece(f"ComfyUI {comfyui_version()} has no {module.__name__}.{name}, which the MixGRPO pack "
                                "needs (tested with ComfyUI 0.3.75; docs/comfyui.md lists the versions).") from None


class NotAFlowModel(ValueError):
    """The model does not sample a noise-to-image rectified flow (its model sampling is not plain CONST)."""


#: the methods that make a model sampling a noise-to-image flow when they are CONST's own
FLOW_METHODS = ("calculate_input", "calculate_denoised", "noise_scaling", "inverse_noise_scaling")


def sampling_type_that_is_not_a_flow(model_sampling) -> str | None:
    """None for a noise-to-image flow (CONST and nothing that redefines how it noises or denoises), else the name
    of the sampling type that makes it something else: EPS / V-prediction, or a CONST subclass of a newer ComfyUI
    such as an image-to-image flow."""
    const = comfy_piece(comfy.model_sampling, "CONST")
    if not isinstance(model_sampling, const):
        return type(model_sampling).__name__
    for klass in type(model_sampling).__mro__:
        if klass is const:
            return None
        if any(method in vars(klass) for method in FLOW_METHODS):
            return klass.__name__
    return None


def model_sampling_of(denoiser_model):
    """The ``model_sampling`` behind the denoiser a KSAMPLER function receives."""
    return denoiser_model.inner_model.inner_model.model_sampling


def flow_shift(model_sampling) -> float | None:
    """The SD3-style shift ``s`` of a flow model's schedule, ``σ(t) = s·t / (1 + (s − 1)·t)``.

    ComfyUI's FLUX sampling stores μ with ``σ(t) = e^μ / (e^μ + 1/t − 1)``, the same curve with
    ``s = e^μ``. Raises :class:`NotAFlowModel` for EPS / V-prediction models.
    """
    kind = sampling_type_that_is_not_a_flow(model_sampling)
    if kind is not None:
        raise NotAFlowModel(
            f"MixGRPO Sampler needs a flow-matching model that samples from noise (CONST model sampling: FLUX, SD3, "
            f"…); this model uses {kind}. Use a stock sampler for it, or load a FLUX / SD3 model.")
    if isinstance(model_sampling, comfy_piece(comfy.model_sampling, "ModelSamplingFlux")):
        return math.exp(float(model_sampling.shift))
    shift = getattr(model_sampling, "shift", None)
    return None if shift is None else float(shift)


def noise_scale(model_sampling) -> float:
    """The factor a model's sampling puts on its noise (newer ComfyUI's ``noise_scale``; 1 where there is none)."""
    return float(getattr(model_sampling, "noise_scale", 1.0))


def ksampler(function, **options):
    """A ComfyUI ``SAMPLER`` object around ``function(model, x, sigmas, extra_args, callback, disable, **options)``."""
    return comfy_piece(comfy.samplers, "KSAMPLER")(function, extra_options=options)


def check_interrupted() -> None:
    """Raise ComfyUI's interruption exception if the user pressed Cancel."""
    comfy.model_management.throw_exception_if_processing_interrupted()


def png_to_image(path):
    """A PNG file as a ComfyUI ``IMAGE`` batch of one: float ``[1, H, W, 3]`` in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array)[None]


def images_to_batch(images):
    """ComfyUI ``IMAGE`` ``[B, H, W, C]`` → the core's ``[B, 3, H, W]`` float in [0, 1]."""
    return images[..., :3].permute(0, 3, 1, 2).float().clamp(0, 1)

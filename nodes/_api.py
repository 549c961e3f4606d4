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


class NotAFlowModel(ValueError):
    """The model does not sample a rectified flow (its model sampling is not CONST)."""


def model_sampling_of(denoiser_model):
    """The ``model_sampling`` behind the denoiser a KSAMPLER function receives."""
    return denoiser_model.inner_model.inner_model.model_sampling


def flow_shift(model_sampling) -> float | None:
    """The SD3-style shift ``s`` of a flow model's schedule, ``σ(t) = s·t / (1 + (s − 1)·t)``.

    ComfyUI's FLUX sampling stores μ with ``σ(t) = e^μ / (e^μ + 1/t − 1)``, the same curve with
    ``s = e^μ``. Raises :class:`NotAFlowModel` for EPS / V-prediction models.
    """
    if not isinstance(model_sampling, comfy.model_sampling.CONST):
        raise NotAFlowModel(
            f"MixGRPO Sampler needs a flow-matching model (CONST model sampling: FLUX, SD3, …); this model "
            f"uses {type(model_sampling).__name__}. Use a stock sampler for it, or load a FLUX / SD3 model.")
    if isinstance(model_sampling, comfy.model_sampling.ModelSamplingFlux):
        return math.exp(float(model_sampling.shift))
    shift = getattr(model_sampling, "shift", None)
    return None if shift is None else float(shift)


def ksampler(function, **options):
    """A ComfyUI ``SAMPLER`` object around ``function(model, x, sigmas, extra_args, callback, disable, **options)``."""
    return comfy.samplers.KSAMPLER(function, extra_options=options)


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

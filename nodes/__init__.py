"""ComfyUI nodes of the pack (V3 schema). Never importable as a top-level ``nodes`` (ComfyUI owns
that name): the root ``__init__.py`` imports this package relatively. Nodes hold no maths: each
calls :mod:`mixgrpo`; ComfyUI's APIs are reached through :mod:`._api` only.
"""

from __future__ import annotations

from ._api import ComfyExtension, folder_paths, io
from .loaders import LoadMixGRPOModel
from .monitor import TrainingRunMonitor
from .sampling import MixGRPOSampler, MixGRPOSchedule
from .scoring import RewardScorer
from .visualise import SlidingWindowVisualiser

NODES: list[type[io.ComfyNode]] = [MixGRPOSampler, MixGRPOSchedule, SlidingWindowVisualiser, RewardScorer,
                                   LoadMixGRPOModel, TrainingRunMonitor]


def register_model_folders() -> None:
    """``models/reward_models/`` for the reward scorer's weights."""
    from pathlib import Path

    if "reward_models" not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path("reward_models", str(Path(folder_paths.models_dir) / "reward_models"))


class MixGRPOExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> MixGRPOExtension:
    register_model_folders()
    return MixGRPOExtension()

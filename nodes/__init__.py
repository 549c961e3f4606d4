"""ComfyUI nodes of the pack (V3 schema). Never importable as a top-level ``nodes`` (ComfyUI owns
that name): the root ``__init__.py`` imports this package relatively. Nodes hold no maths: each
calls :mod:`mixgrpo`; ComfyUI's APIs are reached through :mod:`._api` only.
"""

from __future__ import annotations

from ._api import ComfyExtension, io, register_reward_folders
from .loaders import LoadMixGRPOModel
from .monitor import TrainingRunMonitor
from .sampling import MixGRPOSampler, MixGRPOSchedule
from .scoring import RewardScorer
from .visualise import SlidingWindowVisualiser

NODES: list[type[io.ComfyNode]] = [MixGRPOSampler, MixGRPOSchedule, SlidingWindowVisualiser, RewardScorer,
                                   LoadMixGRPOModel, TrainingRunMonitor]


class MixGRPOExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> MixGRPOExtension:
    register_reward_folders()  # models/reward_models/ and extra_model_paths.yaml's, for the core
    return MixGRPOExtension()

"""Reward weights in a real ComfyUI server: every ``reward_models`` folder ComfyUI knows is searched.

One server, started with ``--extra-model-paths-config`` naming a second ``reward_models`` folder
(as a user's ``extra_model_paths.yaml`` does), and with a clean reward environment (its own
``XDG_CACHE_HOME``, no ``MIXGRPO_*`` weight variables), so only ComfyUI's folders can hold weights.
A helper pack in its ``custom_nodes/`` adds a third folder when one of its nodes runs: a folder
registered after start-up, the way another pack may add one.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from comfy_setup import ComfyServer, comfyui_root, free_port

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[2]
HPS_FILE = "HPS_v2.1_compressed.pt"
WEIGHT_VARIABLES = ("MIXGRPO_REWARD_DIR", "MIXGRPO_HPS_V2", "MIXGRPO_HPS_V2_1", "MIXGRPO_PICKSCORE", "MIXGRPO_CLIP",
                    "MIXGRPO_IMAGE_REWARD")
LATE_FOLDER_PACK = '''
import folder_paths


class AddRewardFolderForTest:
    """Adds a reward_models folder when it runs (a folder ComfyUI learns of after start-up)."""
    CATEGORY = "testing"
    FUNCTION = "add"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": ""})}}

    def add(self, path):
        folder_paths.add_model_folder_path("reward_models", path)
        return {}


NODE_CLASS_MAPPINGS = {"AddRewardFolderForTest": AddRewardFolderForTest}
'''


class ServerWithExtraPaths(ComfyServer):
    """:class:`ComfyServer`, plus ``--extra-model-paths-config config`` and environment ``env``."""

    def __init__(self, base: Path, repo: Path, config: Path, env: dict, startup_timeout: float = 240):
        self.base, self.port = Path(base), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (self.base / "custom_nodes" / "comfyui-mixgrpo").symlink_to(repo, target_is_directory=True)
        self.log_path = self.base / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-api-nodes", "--database-url", "sqlite:///:memory:", "--base-directory", str(self.base),
             "--extra-model-paths-config", str(config)],
            cwd=str(comfyui_root()), env=env, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)
        self._wait(startup_timeout)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward-folders")
    paths = {"base": root / "comfyui", "default": root / "comfyui" / "models" / "reward_models",
             "extra": root / "shared" / "rewards", "late": root / "late-rewards", "cache": root / "cache"}
    for key in ("extra", "late"):
        paths[key].mkdir(parents=True)
    return paths


@pytest.fixture(scope="module")
def server(folders):
    config = folders["base"].parent / "extra_model_paths.yaml"
    config.write_text(f"shared:\n    base_path: {folders['extra'].parent}\n    reward_models: {folders['extra'].name}\n")
    pack = folders["base"] / "custom_nodes" / "late_reward_folder"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(LATE_FOLDER_PACK)
    env = {k: v for k, v in os.environ.items() if k not in WEIGHT_VARIABLES} | {"XDG_CACHE_HOME": str(folders["cache"])}
    s = ServerWithExtraPaths(folders["base"], REPO, config, env)
    yield s
    s.stop()


def two_colours_scored(rewards: str) -> dict:
    """A batch of two solid 64×64 images (red-ish, blue-ish) scored by the Reward Scorer."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0xC81E1E}},
            "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x3250FA}},
            "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
            "4": {"class_type": "MixGRPORewardScorer", "inputs": {"images": ["3", 0], "prompt": "a red circle",
                                                                   "rewards": rewards}}}


def two_colours_tensor() -> torch.Tensor:
    """The same batch as EmptyImage builds it, as the core's ``[B, 3, H, W]``."""
    colours = [(0xC8, 0x1E, 0x1E), (0x32, 0x50, 0xFA)]
    return torch.stack([torch.tensor(c, dtype=torch.float32).div(0xFF).view(3, 1, 1).expand(3, 64, 64) for c in colours])


def node_error(entry: dict) -> str:
    assert entry["status"]["status_str"] == "error", entry["status"]
    return next(data["exception_message"] for kind, data in entry["status"]["messages"] if kind == "execution_error")


def looked_in(entry: dict) -> list[str]:
    """The places a not-found weight error lists."""
    message = node_error(entry)
    assert "not found. Looked in:" in message, message
    block = message.split("Looked in:\n", 1)[1]
    return [line.strip() for line in block.splitlines() if line.startswith("  ")]


def test_missing_weights_error_lists_models_reward_models_and_the_yaml_folder(server, folders):
    assert str(folders["extra"]) in server.log  # ComfyUI read the config ("Adding extra search path ...")
    places = looked_in(server.run_prompt(two_colours_scored("hpsv2.1:1")))
    assert str(folders["default"] / HPS_FILE) in places, places
    assert str(folders["extra"] / HPS_FILE) in places, places
    assert str(folders["cache"] / "mixgrpo" / "rewards" / HPS_FILE) in places  # the server's own cache, not ours
    assert not any(str(folders["late"]) in p for p in places)  # not known to ComfyUI yet


def test_a_folder_added_after_start_up_is_searched_on_the_next_score(server, folders):
    added = server.run_prompt({"1": {"class_type": "AddRewardFolderForTest", "inputs": {"path": str(folders["late"])}}})
    assert added["status"]["status_str"] == "success", added["status"]
    places = looked_in(server.run_prompt(two_colours_scored("hpsv2.1:1")))
    assert str(folders["late"] / HPS_FILE) in places, places
    assert str(folders["extra"] / HPS_FILE) in places and str(folders["default"] / HPS_FILE) in places


def test_pickscore_weights_in_the_yaml_folder_are_found_and_score_as_the_core(server, folders):
    from mixgrpo.rewards.clip_scores import PickScore
    from mixgrpo.rewards.tiny import build_tiny_clip_folder

    build_tiny_clip_folder(folders["extra"] / "PickScore_v1", seed=3)
    listed = server.get("/models/reward_models")  # ComfyUI itself lists the yaml folder's files
    assert any(name.startswith("PickScore_v1") for name in listed), listed
    entry = server.run_prompt(two_colours_scored("pickscore:1"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    lines = entry["outputs"]["4"]["text"][0].splitlines()[1:]  # "#1: image 0  score 12.3456  pickscore 12.3456"
    node = {int(line.split("image ")[1].split()[0]): float(line.split("score ")[1].split()[0]) for line in lines}
    core = PickScore(path=folders["extra"] / "PickScore_v1", device="cpu")(two_colours_tensor(), ["a red circle"] * 2)
    assert sorted(node) == [0, 1]
    assert np.allclose([node[0], node[1]], core.scores.tolist(), atol=1e-3), (node, core.scores)
    assert abs(node[0] - node[1]) > 1e-3  # two images, two scores: the comparison means something


def test_an_hps_checkpoint_in_the_yaml_folder_is_found_and_read(server, folders):
    """The node cannot pass a tiny ``model_config``, so HPS builds ViT-H-14 and the tiny checkpoint does
    not fit it: the error turns from 'not found' into a shape mismatch quoting the file's own shapes."""
    import open_clip

    from mixgrpo.rewards.tiny import TINY_OPEN_CLIP

    torch.manual_seed(0)
    torch.save({"state_dict": open_clip.model.CLIP(**TINY_OPEN_CLIP).state_dict()}, folders["extra"] / HPS_FILE)
    message = node_error(server.run_prompt(two_colours_scored("hpsv2.1:1")))
    assert "not found" not in message, message
    assert "size mismatch" in message and "torch.Size([32, 3, 32, 32]) from checkpoint" in message, message[:2000]

"""PickScore and CLIP score on a tiny random transformers CLIP written to a temporary folder."""

import pytest
import torch

from mixgrpo.errors import ModelLoadError
from mixgrpo.rewards import get_reward
from mixgrpo.rewards.clip_scores import CLIPScore, PickScore
from mixgrpo.rewards.tiny import build_tiny_clip_folder

pytestmark = pytest.mark.models

PROMPTS = ["a red circle", "two blue squares", "a yellow triangle on the left"]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("rewards")
    for name in ("PickScore_v1", "clip"):
        build_tiny_clip_folder(root / name)
    return root


def _reference_logits(folder, images, prompts):
    """Independent path: the model's own forward pass gives exp(logit_scale)·cos."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    model = CLIPModel.from_pretrained(str(folder)).eval()
    pixels = CLIPImageProcessor.from_pretrained(str(folder))(images=list(images), return_tensors="pt",
                                                              do_rescale=False)["pixel_values"]
    tokens = AutoTokenizer.from_pretrained(str(folder))(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(pixel_values=pixels, **tokens).logits_per_image.diagonal()
    return logits, model.logit_scale.exp().item()


def test_pickscore_is_scaled_cosine_with_its_standardisation(clip_folder):
    images = torch.rand(3, 3, 80, 96, generator=torch.Generator().manual_seed(0))
    reward = PickScore(path=clip_folder / "PickScore_v1", device="cpu")
    got = reward(images, PROMPTS).scores
    want, _ = _reference_logits(clip_folder / "PickScore_v1", images, PROMPTS)
    assert torch.allclose(got, want, atol=1e-4) and got.std() > 0
    assert torch.allclose(reward.normalization(got), (got - 18) / 8)


def test_clip_score_is_100_times_clamped_cosine(clip_folder):
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    got = CLIPScore(path=clip_folder / "clip", device="cpu")(images, PROMPTS).scores
    logits, scale = _reference_logits(clip_folder / "clip", images, PROMPTS)
    assert torch.allclose(got, 100 * (logits / scale).clamp(min=0), atol=1e-3)


def test_folder_found_through_the_search_dirs(clip_folder, tmp_path, monkeypatch):
    from mixgrpo.rewards import weights

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MIXGRPO_PICKSCORE", raising=False)
    monkeypatch.delenv("MIXGRPO_REWARD_DIR", raising=False)
    with pytest.raises(ModelLoadError, match="(?s)folder 'PickScore_v1' not found.*yuvalkirstain/PickScore_v1"):
        PickScore(device="cpu")
    monkeypatch.setattr(weights, "_SEARCH_DIRS", [clip_folder])  # as ComfyUI's models/reward_models
    assert get_reward("pickscore", device="cpu").name == "pickscore"

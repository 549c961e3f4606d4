"""PickScore and CLIP score on a tiny random transformers CLIP written to a temporary folder."""

import pytest
import torch

from mixgrpo.errors import ModelLoadError
from mixgrpo.models.tiny import clip_tokenizer
from mixgrpo.rewards import get_reward
from mixgrpo.rewards.clip_scores import CLIPScore, PickScore

pytestmark = pytest.mark.models

PROMPTS = ["a red circle", "two blue squares", "a yellow triangle on the left"]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = clip_tokenizer()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=16, logit_scale_init_value=2.6592)
    root = tmp_path_factory.mktemp("rewards")
    for name in ("PickScore_v1", "clip"):
        CLIPModel(config).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(root / name)
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

"""HPS v2 / v2.1 on open-clip-torch against the reference scorer of ``hpsv2x==1.2.0`` (tiny random CLIP).

The reference is installed with ``--no-deps`` into a test-only folder (its own pins conflict with
ours), its model cache is pre-filled with the tiny model (its top-level ``score()`` would otherwise
download ViT-H-14), and it is handed the checkpoint path. Both score the same 8-bit images.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixgrpo.errors import ModelLoadError
from mixgrpo.rewards import get_reward
from mixgrpo.rewards.hps import HPS
from mixgrpo.rewards.tiny import TINY_OPEN_CLIP

pytestmark = pytest.mark.models

TINY = TINY_OPEN_CLIP
REFERENCE = Path.home() / ".cache" / "mixgrpo-tests" / "hpsv2x-1.2.0"


@pytest.fixture(scope="module")
def reference():
    if not (REFERENCE / "hpsv2" / "img_score.py").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(REFERENCE),
                        "hpsv2x==1.2.0", "clint==0.5.1"], check=True)
    sys.path.insert(0, str(REFERENCE))
    try:
        import hpsv2.img_score as img_score
        from hpsv2.src.open_clip.model import CLIP
        from hpsv2.src.open_clip.transform import image_transform
    finally:
        sys.path.remove(str(REFERENCE))
    return img_score, CLIP, image_transform


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory):
    img_score, CLIP, image_transform = reference
    torch.manual_seed(0)
    model = CLIP(**TINY, output_dict=True)
    with torch.no_grad():  # a random CLIP has near-identical features everywhere: spread them out
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = tmp_path_factory.mktemp("hps") / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    img_score.model_dict["model"] = model
    img_score.model_dict["preprocess_val"] = image_transform(224, is_train=False, resize_longest_max=True)
    return path


def _images(h, w, n, seed):
    rng = np.random.default_rng(seed)
    smooth = rng.random((n, 3, h // 8 + 1, w // 8 + 1))
    array = np.kron(smooth, np.ones((1, 1, 8, 8)))[:, :, :h, :w] * 0.8 + rng.random((n, 3, h, w)) * 0.2
    return (torch.from_numpy(array).float() * 255).round().to(torch.uint8)


@pytest.mark.parametrize("h,w", [(128, 128), (96, 160), (300, 200)])
def test_parity_with_the_reference_scorer(reference, checkpoint, h, w):
    img_score = reference[0]
    prompts = ["a red circle", "two blue squares above a green triangle", "a photo of a cat", "oily portrait"]
    pixels = _images(h, w, len(prompts), seed=h + w)
    ours = HPS(version="v2.1", checkpoint=checkpoint, model_config=TINY, device="cpu")
    got = ours(pixels.float() / 255, prompts).scores
    want = torch.tensor([float(img_score.score(Image.fromarray(p.permute(1, 2, 0).numpy()), prompt, cp=str(checkpoint),
                                               hps_version="v2.1")[0]) for p, prompt in zip(pixels, prompts)])
    assert got.std() > 1e-3  # the scores differ between samples, so parity means something
    print(f"HPS parity {h}×{w}: max |ours − reference| = {(got - want).abs().max():.2e}")
    assert (got - want).abs().max() <= 1e-5, (got, want)


def test_registry_names_and_missing_weights(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MIXGRPO_REWARD_DIR", raising=False)
    monkeypatch.delenv("MIXGRPO_HPS_V2_1", raising=False)
    with pytest.raises(ModelLoadError, match="(?s)HPS_v2.1_compressed.pt.*not found.*reward_models.*huggingface.co/xswu/HPSv2"):
        get_reward("hpsv2.1", model_config=TINY, device="cpu")
    monkeypatch.setenv("MIXGRPO_HPS_V2_1", str(checkpoint))
    reward = get_reward("hpsv2.1", model_config=TINY, device="cpu")
    assert reward.name == "hpsv2.1" and reward is get_reward("hpsv2.1", model_config=TINY, device="cpu")


def test_differentiable_mode_gives_image_gradients(checkpoint):
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    frozen = HPS(version="v2.1", checkpoint=checkpoint, model_config=TINY, device="cpu")
    assert not frozen(images, ["a", "b"]).scores.requires_grad
    scores = HPS(version="v2.1", checkpoint=checkpoint, model_config=TINY, device="cpu",
                 differentiable=True)(images, ["a", "b"]).scores
    assert (scores.detach() - frozen(images, ["a", "b"]).scores).abs().max() <= 1e-6  # same numbers either way
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_text_cut_after_the_last_eot_equals_the_full_tower():
    """The causal text tower reads the EOT position, so dropping the padding after it changes nothing."""
    import open_clip

    from mixgrpo.rewards.hps import encode_text_causal

    torch.manual_seed(1)
    model = open_clip.model.CLIP(**TINY).eval()
    tokenizer = open_clip.get_tokenizer("ViT-H-14")
    prompts = ["a cat", "two blue squares above a green triangle", "word " * 100]  # the last is cut at 77
    with torch.no_grad():
        full = model.encode_text(tokenizer(prompts), normalize=True)
        short = encode_text_causal(model, tokenizer(prompts[:2]))  # runs 10 of the 77 positions
        alone = encode_text_causal(model, tokenizer(prompts[:1]))
        long = encode_text_causal(model, tokenizer(prompts))
    assert int(tokenizer(prompts[:2]).argmax(-1).max()) + 1 < 77
    assert (short - full[:2]).abs().max() <= 1e-6 and (alone - full[:1]).abs().max() <= 1e-6
    assert (long - full).abs().max() <= 1e-6 and (full[0] - full[1]).abs().max() > 1e-3


def test_prompt_cache_and_preprocessing_change_no_score(checkpoint):
    """Scores do not depend on which prompts were seen before or share the batch; the fused
    preprocessing equals resize → pad with 0 → normalise, and leaves the caller's images alone."""
    import torch.nn.functional as F
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    from mixgrpo.rewards.hps import OPENAI_MEAN, OPENAI_STD, hps_preprocess

    reward = HPS(version="v2.1", checkpoint=checkpoint, model_config=TINY, device="cpu")
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    prompts = ["a cat", "a dog " * 20, "a cat"]
    first = reward(images, prompts).scores
    assert len(reward._text_features) == 2  # each distinct prompt embedded once
    assert torch.equal(reward(images, prompts).scores, first)  # from the cache
    assert (reward(images[:1], ["a cat"]).scores - first[0]).abs().max() <= 1e-6
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    for h, w in [(224, 224), (512, 512), (64, 300), (250, 90), (100, 60), (96, 96)]:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
        before = x.clone()
        s = 224 / max(h, w)
        nh, nw = round(h * s), round(w * s)
        want = resize(x, [nh, nw], InterpolationMode.BICUBIC, antialias=True) if (nh, nw) != (h, w) else x
        want = F.pad(want, ((224 - nw) // 2, 224 - nw - (224 - nw) // 2, (224 - nh) // 2, 224 - nh - (224 - nh) // 2))
        got = hps_preprocess(x)
        assert (got - (want - mean) / std).abs().max() <= 1e-5 and torch.equal(x, before)
        buffer = torch.full((3, 3, 224, 224), float("nan"))  # reused buffer, larger than the batch
        assert torch.equal(hps_preprocess(x, out=buffer[:2]), got)
        functional = hps_preprocess(x.clone().requires_grad_())  # the autograd path: F.interpolate, copied
        assert (functional - got).abs().max() <= 1e-6

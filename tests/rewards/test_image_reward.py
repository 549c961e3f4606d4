"""ImageReward on a tiny random BLIP written in the official ``ImageReward.pt`` key format.

The expected scores come from an independent forward pass written here with plain tensor ops on
the official state dict (BLIP's ViT and med BERT as published), not from transformers' modules,
so a wrong key mapping, head count, activation or padding mask shows up as a value difference.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from mixgrpo.errors import ModelLoadError
from mixgrpo.rewards import get_reward
from mixgrpo.rewards.image_reward import ImageReward
from mixgrpo.rewards.tiny import TINY_IMAGE_REWARD_VISION, TINY_MED_CONFIG, build_tiny_image_reward_folder

pytestmark = pytest.mark.models

VISION = TINY_IMAGE_REWARD_VISION
PROMPTS = ["a red circle", "two blue squares above a green triangle on the left", "a cat", "purple triangles"]
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_image_reward_folder(tmp_path_factory.mktemp("rewards") / "ImageReward", seed=0)


@pytest.fixture(scope="module")
def reward(folder):
    return ImageReward(path=folder, vision_config=VISION, device="cpu")


# ---- independent reference: the published architecture on the official keys ---------------------

def _ln(x, sd, name, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def _lin(x, sd, name):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def _attend(q, k, v, heads, key_mask=None):
    """softmax(q·kᵀ/√d_head)·v per head; ``key_mask`` [B, N_k] is 1 for keys that may be attended."""
    b, n_q, width = q.shape

    def split(t):
        return t.reshape(b, t.shape[1], heads, width // heads).transpose(1, 2)

    logits = split(q) @ split(k).transpose(-1, -2) / math.sqrt(width // heads)
    if key_mask is not None:
        logits = logits.masked_fill(key_mask[:, None, None, :] == 0, float("-inf"))
    return (logits.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, n_q, width)


def _vit(sd, pixels):
    v, heads = "blip.visual_encoder", VISION["num_attention_heads"]
    patch = sd[f"{v}.patch_embed.proj.weight"]
    x = F.conv2d(pixels, patch, sd[f"{v}.patch_embed.proj.bias"], stride=patch.shape[-1]).flatten(2).transpose(1, 2)
    x = torch.cat([sd[f"{v}.cls_token"].expand(len(x), -1, -1), x], 1) + sd[f"{v}.pos_embed"]
    for i in range(VISION["num_hidden_layers"]):
        b = f"{v}.blocks.{i}"
        q, k, val = _lin(_ln(x, sd, f"{b}.norm1", 1e-6), sd, f"{b}.attn.qkv").chunk(3, dim=-1)
        x = x + _lin(_attend(q, k, val, heads), sd, f"{b}.attn.proj")
        x = x + _lin(F.gelu(_lin(_ln(x, sd, f"{b}.norm2", 1e-6), sd, f"{b}.mlp.fc1")), sd, f"{b}.mlp.fc2")
    return _ln(x, sd, f"{v}.norm", 1e-6)


def _bert_cls(sd, ids, mask, image):
    t, heads, eps = "blip.text_encoder", TINY_MED_CONFIG["num_attention_heads"], TINY_MED_CONFIG["layer_norm_eps"]
    x = sd[f"{t}.embeddings.word_embeddings.weight"][ids] + sd[f"{t}.embeddings.position_embeddings.weight"][:ids.shape[1]]
    x = _ln(x, sd, f"{t}.embeddings.LayerNorm", eps)
    for i in range(TINY_MED_CONFIG["num_hidden_layers"]):
        a, c, layer = f"{t}.encoder.layer.{i}.attention", f"{t}.encoder.layer.{i}.crossattention", f"{t}.encoder.layer.{i}"
        ctx = _attend(_lin(x, sd, f"{a}.self.query"), _lin(x, sd, f"{a}.self.key"), _lin(x, sd, f"{a}.self.value"),
                      heads, mask)
        x = _ln(x + _lin(ctx, sd, f"{a}.output.dense"), sd, f"{a}.output.LayerNorm", eps)
        ctx = _attend(_lin(x, sd, f"{c}.self.query"), _lin(image, sd, f"{c}.self.key"),
                      _lin(image, sd, f"{c}.self.value"), heads)
        x = _ln(x + _lin(ctx, sd, f"{c}.output.dense"), sd, f"{c}.output.LayerNorm", eps)
        x = _ln(x + _lin(F.gelu(_lin(x, sd, f"{layer}.intermediate.dense")), sd, f"{layer}.output.dense"),
                sd, f"{layer}.output.LayerNorm", eps)
    return x[:, 0]


def _reference_scores(folder, images, prompts, tokenizer):
    """(MLP(h_CLS) − 0.16717362830052426) / 1.0333394966054072 with torchvision's Resize/CenterCrop/Normalize
    (the resized image clipped to [0, 1], as the official 8-bit PIL resize clips)."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Lambda, Normalize, Resize

    sd = torch.load(folder / "ImageReward.pt", weights_only=True)
    preprocess = Compose([Resize(224, InterpolationMode.BICUBIC, antialias=True), Lambda(lambda x: x.clamp(0, 1)),
                          CenterCrop(224), Normalize(CLIP_MEAN.flatten().tolist(), CLIP_STD.flatten().tolist())])
    tokens = tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    with torch.no_grad():
        h = _bert_cls(sd, tokens["input_ids"], tokens["attention_mask"], _vit(sd, preprocess(images)))
        for k in (0, 2, 4, 6, 7):  # Linear layers of the head; dropouts 1, 3, 5 are identities at eval
            h = _lin(h, sd, f"mlp.layers.{k}")
    return (h.squeeze(-1) - 0.16717362830052426) / 1.0333394966054072


# ---- tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(224, 224), (128, 160), (300, 200)])
def test_scores_match_an_independent_forward_of_the_official_weights(folder, reward, h, w):
    images = torch.rand(len(PROMPTS), 3, h, w, generator=torch.Generator().manual_seed(h + w))
    got = reward(images, PROMPTS).scores
    want = _reference_scores(folder, images, PROMPTS, reward.tokenizer)
    print(f"ImageReward {h}×{w}: max |ours − reference| = {(got - want).abs().max():.2e}, scores {got.tolist()}")
    assert got.dtype == torch.float32 and got.shape == (len(PROMPTS),)
    assert got.std() > 0.05  # scores differ between samples, so agreement means something
    assert (got - want).abs().max() <= 1e-5, (got, want)


def test_close_to_the_official_pil_preprocessing_on_8_bit_renders(reward):
    """The official scorer resizes 8-bit PIL images (rounded between passes); we resize float tensors."""
    from PIL import Image
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    from mixgrpo.shapes import render_batch

    official = Compose([Resize(224, interpolation=InterpolationMode.BICUBIC), CenterCrop(224), ToTensor(),
                        Normalize(CLIP_MEAN.flatten().tolist(), CLIP_STD.flatten().tolist())])
    prompts = ["a red circle", "two blue squares", "a green triangle on the left", "three yellow circles"]
    images = (render_batch(prompts, 96, seed=0) * 255).round() / 255
    pixels = torch.stack([official(Image.fromarray((im.permute(1, 2, 0) * 255).round().byte().numpy()))
                          for im in images])
    with torch.no_grad():
        want = reward.model(pixels, *reward.tokenize(prompts))
    got = reward(images, prompts).scores
    print(f"ImageReward vs official PIL preprocessing: max |Δ| = {(got - want).abs().max():.1e}, std {got.std():.2f}")
    assert (got - want).abs().max() <= 2e-3 and got.std() > 0.05


def test_tokens_are_cls_prompt_sep_padded_to_35(folder, reward):
    vocab = {w: i for i, w in enumerate((folder / "vocab.txt").read_text().split("\n"))}
    ids, mask = reward.tokenize(["A Red circle, two!"])
    words = ["[CLS]", "a", "red", "circle", ",", "two", "!", "[SEP]"]
    assert ids.shape == mask.shape == (1, 35)
    assert ids[0].tolist() == [vocab[w] for w in words] + [vocab["[PAD]"]] * (35 - len(words))
    assert mask[0].tolist() == [1] * len(words) + [0] * (35 - len(words))
    long_ids, long_mask = reward.tokenize(["red " * 50])
    assert long_ids[0, -1] == vocab["[SEP]"] and long_mask.all()  # truncated to 35 with its [SEP]


def test_batch_invariance_and_prompt_sensitivity(folder, reward):
    images = torch.rand(6, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    prompts = ["a red circle", "a red circle", "two blue squares", "a cat", "a red circle", "the top left"]
    together = reward(images, prompts).scores
    alone = torch.cat([reward(images[i:i + 1], prompts[i:i + 1]).scores for i in range(6)])
    chunked = ImageReward(path=folder, vision_config=VISION, device="cpu", batch_size=4)(images, prompts).scores
    assert (together - alone).abs().max() <= 1e-5 and (together - chunked).abs().max() <= 1e-5
    same_image = images[:1].expand(3, -1, -1, -1)
    by_prompt = reward(same_image, ["a red circle", "two blue squares", "a yellow triangle on the left"]).scores
    assert (by_prompt[:, None] - by_prompt[None]).abs().sum() > 0.1  # the prompt changes the score
    assert (by_prompt - by_prompt[0]).abs()[1:].min() > 1e-3


def test_registry_name_lookup_and_missing_files(folder, tmp_path, monkeypatch):
    from mixgrpo.rewards import weights

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("MIXGRPO_IMAGE_REWARD", "MIXGRPO_REWARD_DIR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ModelLoadError, match="(?s)folder 'ImageReward' not found.*reward_models.*"
                                             "huggingface.co/THUDM/ImageReward.*bert-base-uncased"):
        get_reward("imagereward", vision_config=VISION, device="cpu")
    partial = tmp_path / "ImageReward"
    partial.mkdir()
    (partial / "ImageReward.pt").write_bytes((folder / "ImageReward.pt").read_bytes())
    with pytest.raises(ModelLoadError, match="(?s)incomplete.*med_config.json, from https://huggingface.co/THUDM/"
                                             "ImageReward.*vocab.txt.*google-bert/bert-base-uncased") as error:
        ImageReward(path=partial, vision_config=VISION, device="cpu")
    assert "ImageReward.pt" not in str(error.value).split("missing:")[1]  # only the missing files are named
    monkeypatch.setattr(weights, "_SEARCH_DIRS", [folder.parent])  # as ComfyUI's models/reward_models
    reward = get_reward("imagereward", vision_config=VISION, device="cpu")
    assert reward.name == "imagereward" and reward is get_reward("imagereward", vision_config=VISION, device="cpu")
    monkeypatch.setenv("MIXGRPO_IMAGE_REWARD", str(folder))
    assert get_reward("imagereward", vision_config=VISION, device="cpu", batch_size=2).name == "imagereward"


def test_a_checkpoint_of_another_architecture_is_a_clear_error(folder):
    with pytest.raises(ModelLoadError, match="does not fit ImageReward"):
        ImageReward(path=folder, vision_config=dict(VISION, hidden_size=64), device="cpu")  # wrong ViT width


def test_differentiable_mode_gives_image_gradients(folder):
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    frozen = ImageReward(path=folder, vision_config=VISION, device="cpu")
    assert not frozen(images, ["a", "b"]).scores.requires_grad
    scores = ImageReward(path=folder, vision_config=VISION, device="cpu", differentiable=True)(images, ["a", "b"]).scores
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0

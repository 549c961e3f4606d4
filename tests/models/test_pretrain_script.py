"""`scripts/pretrain_embedded.py`: prompt labels and text pretraining, the high-noise σ draws, the
fine-tune stage, and the VAE stage's latent perturbations (`mixgrpo.shapes.pretrain_vae`)."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixgrpo.models.embedded import EMBEDDED_DIR, read_settings  # noqa: E402
from mixgrpo.shapes import pretrain_vae as vae_stage  # noqa: E402

pytestmark = pytest.mark.models

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pretrain_embedded.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("pretrain_embedded", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_high_noise_share_of_sigma_draws(script):
    gen = torch.Generator().manual_seed(0)
    plain = script.sample_sigmas(20_000, gen)
    mixed = script.sample_sigmas(20_000, gen, high_noise=0.75)
    only_high = script.sample_sigmas(2_000, gen, high_noise=1.0)
    assert only_high.min() >= 0.6 and only_high.max() <= 1.0
    # plain: ½·P(shifted σ ≥ 0.6) + ½·0.4 = ½·⅔ + 0.2 ≈ 0.53; mixed: 0.75 + 0.25·0.53 ≈ 0.88
    assert (plain >= 0.6).float().mean().item() == pytest.approx(0.533, abs=0.02)
    assert (mixed >= 0.6).float().mean().item() == pytest.approx(0.883, abs=0.02)


def test_finetune_stage_keeps_the_vae_and_chains_the_record(script, tmp_path):
    out = tmp_path / "v2"
    script.main(["--finetune-from", str(EMBEDDED_DIR), "--flow-steps", "2", "--renders", "1", "--batch", "4",
                 "--high-noise", "0.75", "--caption-dropout", "0.5", "--cfg-scale", "1.5", "--eval-seeds", "1",
                 "--out", str(out), "--grid", str(tmp_path / "g.png")])
    base, new = read_settings(EMBEDDED_DIR), read_settings(out)
    assert new["cfg_scale"] == 1.5  # recorded as the model's sampling default, and scored both ways
    assert 0 <= new["evaluation_unguided"]["mean"] <= 1 and new["evaluation_unguided"]["mean"] != new["evaluation"]["mean"]
    assert new["pretrain"]["command"].startswith(base["pretrain"]["command"] + " && python scripts/pretrain_embedded.py")
    assert new["pretrain"]["seconds"] > base["pretrain"]["seconds"]
    assert 0 <= new["evaluation"]["mean"] <= 1 and (tmp_path / "g.png").exists()
    old_vae = json.loads((EMBEDDED_DIR / "vae" / "config.json").read_text())
    new_vae = json.loads((out / "vae" / "config.json").read_text())
    assert (new_vae["shift_factor"], new_vae["scaling_factor"]) == (old_vae["shift_factor"], old_vae["scaling_factor"])
    weights = "diffusion_pytorch_model.safetensors"
    old, trained = load_file(EMBEDDED_DIR / "vae" / weights), load_file(out / "vae" / weights)
    assert all(torch.equal(old[k], trained[k]) for k in old)
    old_t, new_t = load_file(EMBEDDED_DIR / "transformer" / weights), load_file(out / "transformer" / weights)
    assert any(not torch.equal(old_t[k], new_t[k]) for k in old_t)  # the flow stage did train


def test_prompt_labels_spell_out_each_group_and_the_relation(script):
    labels = script.prompt_labels(["a red circle above two blue squares", "three triangles on the left"])
    # slot: shape (circle 1, square 2, triangle 3), colour (red 1 … blue 3), count, position (left 1 …)
    assert labels.tolist() == [[1, 1, 1, 0, 2, 3, 2, 0, 1],
                               [3, 0, 3, 1, 0, 0, 0, 0, 0]]
    assert len(script.label_classes()) == labels.shape[1]
    assert all(labels[:, i].max() < n for i, n in enumerate(script.label_classes()))


def test_text_pretraining_separates_position_words(script):
    """Random encoders barely tell "left" from "right" in CLIP's pooled output (the only text FLUX's
    modulation sees); a short grammar pretraining makes the difference large."""
    from mixgrpo.models.tiny import build_tiny_flux
    from mixgrpo.shapes import train_prompts

    prompts = train_prompts()
    pipe = build_tiny_flux(None, script.ARCHITECTURE, seed=0, words=sorted({w for p in prompts for w in p.split()}))
    pair = ["a red circle on the left", "a red circle on the right"]

    def pooled_gap():
        with torch.no_grad():
            _, pooled = script.text_conditioning(pipe, *script.tokenize(pipe, pair))
        return ((pooled[0] - pooled[1]).norm() / pooled[0].norm()).item()

    before = pooled_gap()
    script.pretrain_text(pipe, prompts, *script.tokenize(pipe, prompts), steps=150, lr=3e-3, batch=64,
                         gen=torch.Generator().manual_seed(0))
    after = pooled_gap()
    assert after > 3 * before, (before, after)


def test_perturbed_latents_are_seeded_and_bounded():
    """Per-sample constant latents: a blur leaves them unchanged, so what moves is the added noise alone,
    whose per-sample std is ``u·std(z)`` with ``u ≤ 0.4``, drawn afresh for each sample."""
    z = torch.linspace(-2, 2, 64)[:, None, None, None].expand(64, 16, 8, 8).contiguous()
    first = vae_stage.perturb_latents(z, torch.Generator().manual_seed(3))
    again = vae_stage.perturb_latents(z, torch.Generator().manual_seed(3))
    other = vae_stage.perturb_latents(z, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    spread = (first - z).flatten(1).std(dim=1) / z.std()
    assert spread.max() <= vae_stage.PERTURB_NOISE * 1.05
    assert spread.min() < 0.1 * vae_stage.PERTURB_NOISE and spread.std() > 0.05  # u varies per sample
    assert (first - z).mean().abs() < 0.02  # zero-mean noise: the picture's values are not shifted


def test_perturbation_blurs_part_of_the_batch():
    """A checkerboard latent: noise alone keeps its sign pattern; a blur of ≥ 0.4 cells flattens it."""
    board = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0
    z = board.expand(400, 16, 8, 8).contiguous()
    out = vae_stage.perturb_latents(z, torch.Generator().manual_seed(0))
    contrast = (out * z).flatten(1).mean(dim=1)  # ≈ 1 unblurred, well below 1 when blurred
    blurred = (contrast < 0.8).float().mean().item()
    assert blurred == pytest.approx(vae_stage.PERTURB_BLUR_SHARE, abs=0.08)


def test_semantic_latents_hide_every_free_channel_from_the_decoder():
    """Anchored channels pass through; past them the decoder sees noise that does not depend on what
    the encoder put there (two latents differing only there look the same to it)."""
    z = torch.randn(4, 16, 8, 8)
    other = z.clone()
    k = vae_stage.ANCHORED_CHANNELS
    other[:, k:] = 7.0
    a = vae_stage.hide_free_channels(z, torch.Generator().manual_seed(0))
    b = vae_stage.hide_free_channels(other, torch.Generator().manual_seed(0))
    assert torch.equal(a[:, :k], z[:, :k]) and torch.equal(a, b)
    assert not torch.allclose(a[:, k:], z[:, k:])
    assert a[:, k:].std().item() == pytest.approx(z[:, :k].std().item(), rel=0.1)


def test_smoothed_anchor_targets_keep_their_mass_and_lose_their_edges():
    field = torch.zeros(1, 3, 16, 16)
    field[0, 1, 6:10, 6:10] = 2.0  # a square's coverage in the "square" channel
    assert torch.equal(vae_stage.smooth_field(field, 0.0), field)
    bump = vae_stage.smooth_field(field, 1.0)
    assert bump.sum().item() == pytest.approx(field.sum().item(), rel=1e-4)  # away from the border
    assert bump.max() < field.max() and (bump[0, 1] > 0.05).sum() > (field[0, 1] > 0).sum()
    assert torch.equal(bump[0, 0], field[0, 0]) and torch.equal(bump[0, 2], field[0, 2])  # per channel

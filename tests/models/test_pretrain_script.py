"""`scripts/pretrain_embedded.py`: the high-noise σ draws and the fine-tune stage that made v1.1."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixgrpo.models.embedded import EMBEDDED_DIR, read_settings  # noqa: E402

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
                 "--high-noise", "0.75", "--eval-seeds", "1", "--out", str(out), "--grid", str(tmp_path / "g.png")])
    base, new = read_settings(EMBEDDED_DIR), read_settings(out)
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

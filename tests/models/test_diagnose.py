"""Denoising diagnostics (`mixgrpo.shapes.diagnose`) and the adapter's `encode`, on the embedded model."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mixgrpo.shapes.diagnose import denoising_report, format_report  # noqa: E402
from mixgrpo.models import load_flow_model  # noqa: E402
from mixgrpo.models.embedded import EMBEDDED_DIR  # noqa: E402
from mixgrpo.shapes import render_batch, score_shapes, test_prompts  # noqa: E402

pytestmark = pytest.mark.models

PROMPTS = test_prompts()[:6]


@pytest.fixture(scope="module")
def model():
    return load_flow_model(EMBEDDED_DIR)


def test_encode_inverts_decode_on_renders(model):
    """decode(encode(x)) ≈ x: a wrong shift or scale in `encode` would change colours by far more."""
    renders = render_batch(PROMPTS, 128, seed=4)
    z = model.encode(renders)
    assert z.shape == (len(PROMPTS), *model.latent_shape(128, 128))
    assert abs(z.std().item() - 1) < 0.35  # the VAE's latents are normalised to ≈ N(0, 1)
    assert (model.decode(z) - renders).abs().mean() < 0.03


def test_report_ends_at_the_round_trip_and_starts_from_noise(model):
    report = denoising_report(model, PROMPTS, starts=(0, 3, 6), sigmas=(0.3,), steps=6, seed=4)
    renders = render_batch(PROMPTS, 128, seed=4)
    round_trip = float(score_shapes(model.decode(model.encode(renders)), PROMPTS)[0].mean())
    sigma, reward = report["partial"][6]
    assert sigma == 0.0 and reward == pytest.approx(round_trip, abs=1e-6)
    assert report["partial"][0][0] == 1.0
    mse, _ = report["one_step"][0.3]
    assert 0 < mse < 0.1  # one step at σ = 0.3 lands near the render's latents
    assert "| 3 |" in format_report(report)


def test_start_step_outside_the_grid_is_an_error(model):
    with pytest.raises(ValueError, match="outside the 6-step grid"):
        denoising_report(model, PROMPTS[:2], starts=(7,), sigmas=(), steps=6)


def test_one_step_error_grows_with_noise(model):
    """A trained denoiser predicts x0 better from less noise (v1: 0.003 at σ 0.15, 0.03 at σ 0.6)."""
    report = denoising_report(model, PROMPTS, starts=(), sigmas=(0.15, 0.6), steps=4, seed=2)
    assert report["one_step"][0.15][0] < report["one_step"][0.6][0] / 3

"""The VAE stage of the embedded model's pretraining (``scripts/pretrain_embedded.py``, stage 2).

``L = MSE(x̂, x) + β·KL + γ·‖μ[:, :3] − 2·avgpool₈(x)‖² + γₛ·‖μ[:, 3:6] − 2·avgpool₈(2m − 1)‖²``:
the colour anchor (:func:`colour_anchor`) and the shape anchor (:func:`shape_anchor`), ``m`` the
renderer's per-kind coverage masks. A decoder that forgives a flow model's imprecise latents trains
on perturbed latents (:func:`perturb_latents`) and sees only the anchored channels
(:func:`hide_free_channels`); :func:`smooth_field` smooths the anchors' targets. Then
:func:`encode_latents` normalises the latents like FLUX, ≈ N(0, 1).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from ..models.embedded import RESOLUTION
from .render import render_batch
from .reward import score_shapes
from .splits import test_prompts


def log_curve(name: str, step: int, total: int, losses: list[float], started: float) -> None:
    recent = sum(losses[-50:]) / len(losses[-50:])
    print(f"[{name}] step {step:5d}/{total}  loss {recent:.5f}  {time.time() - started:6.0f}s", flush=True)


def smooth_field(field: torch.Tensor, width: float) -> torch.Tensor:
    """A Gaussian blur of ``width`` latent cells (none at 0): the anchors' targets with
    ``--vae-anchor-blur``, so colour and shape kind are smooth bumps the flow model can draw, and the
    decoder learns to render the crisp outline a bump stands for."""
    if width <= 0:
        return field
    return TF.gaussian_blur(field, 2 * int(2 * width + 0.5) + 1, width)


def colour_anchor(mean: torch.Tensor, x: torch.Tensor, smooth: float = 0.0) -> torch.Tensor:
    """``‖μ[:, :3] − 2·avgpool₈(x)‖²``: latent channels 0–2 carry each 8×8 patch's mean colour.

    Colour then lives in three large, linear latent directions instead of small, entangled ones, so
    the flow model's errors shift colours far less and colour words map to latents simply.
    """
    return F.mse_loss(mean[:, :3], smooth_field(2 * F.avg_pool2d(x, 8), smooth))


def shape_anchor(mean: torch.Tensor, masks: torch.Tensor, smooth: float = 0.0) -> torch.Tensor:
    """``‖μ[:, 3:6] − 2·avgpool₈(2m − 1)‖²``: channels 3–5 carry how much of each 8×8 patch is covered
    by a circle, a square, a triangle (``m``: the renderer's coverage masks, :func:`draw_shape_masks`).

    Shape kind then lives in large latent directions, like colour: a flow model that puts a
    roughly right blob in the "square" channel gets a square from the decoder, which learns to draw
    crisp edges of the kind the channel names.
    """
    return F.mse_loss(mean[:, 3:6], smooth_field(2 * F.avg_pool2d(2 * masks - 1, 8), smooth))


def train_vae(vae, images: torch.Tensor, steps: int, batch: int, lr: float, beta: float, crop: int, gen,
              anchor: float = 0.0, masks: torch.Tensor | None = None, shape_weight: float = 0.0,
              perturb: bool = False, semantic: bool = False, smooth: float = 0.0) -> None:
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    losses, started = [], time.time()
    vae.train()
    side = min(crop, images.shape[-1])
    device = next(vae.parameters()).device
    for step in range(1, steps + 1):
        # random crops: the VAE is fully convolutional, and 64² crops cost a quarter of full images
        top, left = torch.randint(0, images.shape[-1] - side + 1, (2,), generator=gen).tolist()
        pick = torch.randint(len(images), (batch,), generator=gen)
        x = images[pick, :, top:top + side, left:left + side].to(device)
        posterior = vae.encode(x).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=gen).to(device)
        z = posterior.mean + posterior.std * eps
        if semantic:
            z = hide_free_channels(z, gen)
        if perturb:
            z = perturb_latents(z, gen)
        recon = vae.decode(z).sample
        loss = F.mse_loss(recon, x) + beta * posterior.kl().mean() / x[0].numel()
        if anchor > 0:
            loss = loss + anchor * colour_anchor(posterior.mean, x, smooth)
        if semantic:
            loss = loss + anchor * posterior.mean[:, ANCHORED_CHANNELS:].square().mean()
        if shape_weight > 0:
            m = masks[pick, :, top:top + side, left:left + side].to(device).float() / 255
            loss = loss + shape_weight * shape_anchor(posterior.mean, m, smooth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps:
            log_curve("vae", step, steps, losses, started)
    vae.eval()


ANCHORED_CHANNELS = 6  # colour (0-2) and shape kind (3-5)


def hide_free_channels(z: torch.Tensor, gen) -> torch.Tensor:
    """``--vae-semantic``: the decoder sees noise in every channel past the anchored ones, so it
    draws the picture from colour and shape-kind coverage alone, and the encoder (pulled to 0 there)
    leaves them empty. The flow model then has six smooth, low-frequency fields to generate — where
    a thing is, what colour, what kind — instead of sixteen entangled ones."""
    free = torch.randn(z[:, ANCHORED_CHANNELS:].shape, generator=gen).to(z) * z[:, :ANCHORED_CHANNELS].detach().std()
    return torch.cat([z[:, :ANCHORED_CHANNELS], free], dim=1)


PERTURB_NOISE = 0.4          # largest added noise, in units of the batch's latent std
PERTURB_BLUR = (0.4, 1.2)    # Gaussian blur width of the latents, in latent cells
PERTURB_BLUR_SHARE = 0.5     # share of the batch that is blurred


def perturb_latents(z: torch.Tensor, gen) -> torch.Tensor:
    """What the decoder trains on with ``--vae-perturb``: ``z + u·std(z)·ε``, ``u ~ U(0, 0.4)`` per
    sample, then half the batch blurred with a Gaussian of width ``s ~ U(0.4, 1.2)`` latent cells.

    A small flow model's samples are imprecise versions of real latents. A decoder that only ever
    saw exact latents draws a blurred latent as an irregular blob; trained on perturbed ones it maps
    them back to the crisp render (test renders with latents blurred by one cell: 0.76 against 0.27
    without, with the shape anchor on). The flow model's errors are dents in the outline rather
    than blur, so on its own this lifted the sampled reward less (README, probe table).
    """
    batch = z.shape[0]
    strength = PERTURB_NOISE * torch.rand(batch, 1, 1, 1, generator=gen).to(z)
    z = z + strength * z.detach().std() * torch.randn(z.shape, generator=gen).to(z)
    lo, hi = PERTURB_BLUR
    blurred = TF.gaussian_blur(z, 5, lo + (hi - lo) * float(torch.rand(1, generator=gen)))
    pick = (torch.rand(batch, generator=gen) < PERTURB_BLUR_SHARE).to(z.device)[:, None, None, None]
    return torch.where(pick, blurred, z)


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 128, keep_normalisation: bool = False) -> torch.Tensor:
    """Posterior means, then normalised like FLUX: ``z = (μ − shift)·scale`` ≈ N(0, 1) (``shift`` and
    ``scale`` set from these latents, or kept from the VAE's config with ``keep_normalisation``)."""
    device = next(vae.parameters()).device
    mus = torch.cat([vae.encode(images[i:i + batch].to(device)).latent_dist.mode().cpu()
                     for i in range(0, len(images), batch)])
    if not keep_normalisation:
        vae.register_to_config(shift_factor=mus.mean().item(), scaling_factor=1.0 / mus.std().item())
    return (mus - vae.config.shift_factor) * vae.config.scaling_factor


@torch.no_grad()
def reconstruction_reward(vae, seed: int) -> float:
    """Mean shapes reward of VAE round trips of test-prompt renders: the ceiling the VAE puts on samples."""
    prompts = test_prompts()
    images = render_batch(prompts, RESOLUTION, seed=seed + 7)
    device = next(vae.parameters()).device
    recon = vae.decode(vae.encode(images.to(device) * 2 - 1).latent_dist.mode()).sample
    return float(score_shapes(((recon.cpu() + 1) / 2).clamp(0, 1), prompts)[0].mean())

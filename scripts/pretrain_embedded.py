"""Pretrain the embedded shapes model on this CPU, seeded and reproducible, and save it as a FluxPipeline.

Stages (each prints its loss curve):

1. **Data.** ``--renders`` ground-truth renders per training prompt (``mixgrpo.shapes``), seeded.
2. **VAE.** ``AutoencoderKL`` (16 latent channels, 8× down-sampling):
   ``L = MSE(x̂, x) + β·KL + γ·‖μ[:, :3] − 2·avgpool₈(x)‖² + γₛ·‖μ[:, 3:6] − 2·avgpool₈(2m − 1)‖²``
   (the colour anchor, :func:`colour_anchor`, and the shape anchor, :func:`shape_anchor`, with ``m``
   the renderer's per-kind coverage masks).
   Options for a decoder that forgives a flow model's imprecise latents: ``--vae-perturb`` trains it
   on noised and blurred latents (:func:`perturb_latents`), ``--vae-semantic`` lets only the anchored
   channels reach it (:func:`hide_free_channels`), ``--vae-anchor-blur`` smooths the anchors'
   targets (:func:`smooth_field`). Measured in the README's probe table. The stage's functions live
   in :mod:`mixgrpo.shapes.pretrain_vae`.
   Then ``shift_factor``/``scaling_factor`` are set from the latent mean/std so latents are ≈ N(0, 1).
3. **Text encoders**, alone (``--text-steps``): linear heads on CLIP's pooled output and the mean T5
   token classify every attribute of the prompt — each group's shape, colour, count, position, and the
   relation (:func:`pretrain_text`) — so position and shape words start as distinct as colour words.
4. **Text encoders + transformer**, jointly, by rectified-flow matching on the frozen VAE's latents:
   ``x_σ = (1 − σ)·z + σ·ε``, target ``v = ε − z``, ``L = ‖v_θ(x_σ, σ, text) − v‖²``, σ drawn as a
   shifted uniform (shift 3, the rollout grid) mixed half-and-half with a plain uniform; with
   ``--high-noise p`` a share ``p`` of the draws comes from ``U(0.6, 1)`` instead; with
   ``--caption-dropout q`` a share ``q`` of the samples is conditioned on the empty prompt, so the
   model also learns the unconditional velocity of classifier-free guidance (``--cfg-scale`` records
   the guidance scale the model then samples with).
   Conditioning goes through exactly the calls ``FluxPipeline.encode_prompt`` makes.
5. **Save + evaluate.** The pipeline and ``mixgrpo.json`` are written to ``--out``; the saved folder
   is reloaded and sampled with the 25-step ODE on the test prompts; shapes-reward scores per category
   go to ``mixgrpo.json`` and a sample grid to ``--grid``.

``--finetune-from DIR`` starts from a saved pipeline and runs only stage 4 (the VAE and its latent
normalisation stay); the record in ``mixgrpo.json`` then chains the commands and adds their times.

Recorded commands (the committed weights, v3.2; 43.2 min on this 2-core CPU, test reward 0.358 at
cfg 2, 0.297 without guidance): stages 1–5 from scratch with the smooth semantic VAE, then a
high-noise flow stage, then a flow stage with an EMA of the weights that also trains the empty
prompt. The model formed shapes poorly from noise although it refined given ones well
(``scripts/diagnose_embedded.py``), so the second stage spends three quarters of its draws on
σ ∈ [0.6, 1]:

    python scripts/pretrain_embedded.py --seed 0 --out v3a --vae-shape-anchor 1.0 --vae-perturb
        --vae-semantic --vae-anchor-blur 0.6 --vae-steps 2400 --bf16      (one command)
    python scripts/pretrain_embedded.py --finetune-from v3a --out v3 --flow-steps 1300 --flow-lr 3e-4
        --high-noise 0.75 --bf16
    python scripts/pretrain_embedded.py --finetune-from v3 --flow-steps 2300 --flow-lr 2e-4 --high-noise 0.5
        --ema 0.995 --bf16 --caption-dropout 0.2 --cfg-scale 2

v3.1 (0.315, 41.1 min) had a third stage of 1800 steps without ``--caption-dropout`` and ``--cfg-scale``.
v3 (0.294, 31.6 min) was the first two commands.
v2 (0.134) was the same two commands without the VAE flags and ``--bf16``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixgrpo.cli import add_debug_flag, run_command  # noqa: E402
from mixgrpo.errors import ModelLoadError  # noqa: E402
from mixgrpo.models.embedded import (  # noqa: E402
    ARCHITECTURE,
    EMBEDDED_DIR,
    MAX_SEQUENCE_LENGTH,
    RESOLUTION,
    SETTINGS_FILE,
    SHIFT,
    read_settings,
    write_settings,
)
from mixgrpo.models.flux import image_ids, pack_latents, unpack_latents  # noqa: E402
from mixgrpo.models.tiny import build_tiny_flux  # noqa: E402
from mixgrpo.algorithm.schedule import shift_time  # noqa: E402
from mixgrpo.shapes import render_batch, test_prompts, train_prompts  # noqa: E402
from mixgrpo.shapes.pretrain_vae import (  # noqa: E402
    encode_latents,
    log_curve,
    reconstruction_reward,
    train_vae,
)


def make_dataset(prompts: list[str], renders: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``renders`` images per prompt; returns images in [−1, 1], their shape masks in [0, 1] (uint8
    storage, /255) and each image's prompt index."""
    images, masks, owners = [], [], []
    for r in range(renders):
        batch, batch_masks = render_batch(prompts, RESOLUTION, seed=seed * 1_000_003 + r * len(prompts),
                                          with_masks=True)
        images.append(batch)
        masks.append((batch_masks * 255).round().to(torch.uint8))
        owners += list(range(len(prompts)))
    return torch.cat(images) * 2 - 1, torch.cat(masks), owners


def text_conditioning(pipe, ids_clip: torch.Tensor, ids_t5: torch.Tensor):
    """The two calls ``FluxPipeline.encode_prompt`` makes: CLIP pooled output, T5 last hidden state."""
    pooled = pipe.text_encoder(ids_clip, output_hidden_states=False).pooler_output
    embeds = pipe.text_encoder_2(ids_t5, output_hidden_states=False)[0]
    return embeds, pooled


def tokenize(pipe, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    clip = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer_max_length,
                          truncation=True, return_tensors="pt").input_ids
    t5 = pipe.tokenizer_2(prompts, padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True,
                          return_tensors="pt").input_ids
    return clip, t5


def prompt_labels(prompts: list[str]) -> torch.Tensor:
    """Class indices ``[N, 9]`` of what each prompt says: for each of two group slots its shape,
    colour, count and position (class 0: the slot is empty or the word is absent), then the relation."""
    from mixgrpo.shapes.prompts import parse_prompt
    from mixgrpo.shapes.world import COLOURS, POSITIONS, RELATIONS, SHAPES

    def index(value, table):
        return 0 if value is None else table.index(value) + 1

    rows = []
    for text in prompts:
        spec = parse_prompt(text)
        row = []
        for slot in range(2):
            obj = spec.objects[slot] if slot < len(spec.objects) else None
            row += [index(obj and obj.shape, SHAPES), index(obj and obj.colour, COLOURS),
                    obj.count if obj else 0, index(obj and obj.position, POSITIONS)]
        rows.append(row + [index(spec.relation, RELATIONS)])
    return torch.tensor(rows)


def label_classes() -> list[int]:
    from mixgrpo.shapes.world import COLOURS, MAX_OBJECTS, POSITIONS, RELATIONS, SHAPES

    group = [len(SHAPES) + 1, len(COLOURS) + 1, MAX_OBJECTS + 1, len(POSITIONS) + 1]
    return group * 2 + [len(RELATIONS) + 1]


def pretrain_text(pipe, prompts: list[str], ids_clip, ids_t5, steps: int, lr: float, batch: int, gen) -> None:
    """Teach the text encoders the prompt grammar before they meet images.

    FLUX's CLIP and T5 arrive pretrained: their embeddings already tell "left" from "right". Ours
    start random, and the flow loss alone teaches them colour words (a strong, global signal) but
    barely position or shape words, so the transformer cannot follow those. Linear heads on CLIP's
    pooled output and on the mean T5 token output classify every attribute of the prompt
    (:func:`prompt_labels`); the summed cross-entropy trains encoders and heads, and the heads are
    dropped afterwards.
    """
    classes = label_classes()
    device = next(pipe.text_encoder.parameters()).device
    heads = torch.nn.ModuleList([torch.nn.Linear(pipe.text_encoder.config.hidden_size, sum(classes)),
                                 torch.nn.Linear(pipe.text_encoder_2.config.d_model, sum(classes))]).to(device)
    labels = prompt_labels(prompts)
    params = [*pipe.text_encoder.parameters(), *pipe.text_encoder_2.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    pipe.text_encoder.train()
    pipe.text_encoder_2.train()
    losses, started = [], time.time()
    for step in range(1, steps + 1):
        pick = torch.randint(len(prompts), (batch,), generator=gen)
        embeds, pooled = text_conditioning(pipe, ids_clip[pick].to(device), ids_t5[pick].to(device))
        real = (ids_t5[pick] != pipe.tokenizer_2.pad_token_id).to(device).float()[..., None]
        t5_mean = (embeds * real).sum(1) / real.sum(1)
        targets, loss = labels[pick].to(device).T, 0.0
        for head, features in zip(heads, (pooled, t5_mean)):
            for logits, target in zip(head(features).split(classes, dim=1), targets):
                loss = loss + F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps:
            log_curve("text", step, steps, losses, started)


HIGH_NOISE = (0.6, 1.0)
ARCHITECTURE_FLAGS = ("hidden", "heads", "double_blocks", "single_blocks", "text_dim", "text_layers")


def sample_sigmas(batch: int, gen, high_noise: float = 0.0) -> torch.Tensor:
    """Half shifted-uniform (where rollouts spend their steps), half uniform; with ``high_noise`` > 0
    that share of the draws is replaced by ``U(0.6, 1)``, the noise levels where shapes form."""
    t = torch.rand(batch, generator=gen)
    shifted = torch.tensor([shift_time(v, SHIFT) for v in t.tolist()])
    sigma = torch.where(torch.rand(batch, generator=gen) < 0.5, shifted, t)
    if high_noise > 0:
        high = HIGH_NOISE[0] + (HIGH_NOISE[1] - HIGH_NOISE[0]) * torch.rand(batch, generator=gen)
        sigma = torch.where(torch.rand(batch, generator=gen) < high_noise, high, sigma)
    return sigma.clamp(1e-3, 1.0)


def train_flow(pipe, latents, owners, ids_clip, ids_t5, steps: int, batch: int, lr: float, ema: float, gen,
               high_noise: float = 0.0, bf16: bool = False, caption_dropout: float = 0.0) -> None:
    """Flow matching; with ``ema`` > 0 the saved weights are the average ``θ̄ ← ema·θ̄ + (1 − ema)·θ``;
    with ``bf16`` the forward pass runs under bfloat16 autocast (fp32 weights and optimizer; 1.5× faster
    on a CPU with AVX-512 BF16); with ``caption_dropout`` > 0 that share of the samples is conditioned
    on the empty prompt, which teaches the unconditional velocity classifier-free guidance needs."""
    params = [*pipe.transformer.parameters(), *pipe.text_encoder.parameters(), *pipe.text_encoder_2.parameters()]
    averaged = [p.detach().clone() for p in params] if ema > 0 else None
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.03)
    owners = torch.tensor(owners)
    empty_clip, empty_t5 = tokenize(pipe, [""])
    device = next(pipe.transformer.parameters()).device
    h = w = latents.shape[-1]
    img_ids = image_ids(h, w, device, torch.float32)
    txt_ids = torch.zeros(MAX_SEQUENCE_LENGTH, 3, device=device)
    for module in (pipe.transformer, pipe.text_encoder, pipe.text_encoder_2):
        module.train()
    losses, started = [], time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(len(latents), (batch,), generator=gen)
        z, who = latents[idx].to(device), owners[idx]
        sigma = sample_sigmas(batch, gen, high_noise).to(device)
        noise = torch.randn(z.shape, generator=gen).to(device)
        s = sigma[:, None, None, None]
        x = (1 - s) * z + s * noise
        clip, t5 = ids_clip[who], ids_t5[who]
        if caption_dropout > 0:
            dropped = torch.rand(batch, generator=gen) < caption_dropout
            clip, t5 = torch.where(dropped[:, None], empty_clip, clip), torch.where(dropped[:, None], empty_t5, t5)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            embeds, pooled = text_conditioning(pipe, clip.to(device), t5.to(device))
            v = pipe.transformer(hidden_states=pack_latents(x), timestep=sigma, pooled_projections=pooled,
                                 encoder_hidden_states=embeds, txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        loss = F.mse_loss(unpack_latents(v, h, w).float(), noise - z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if averaged is not None:
            torch._foreach_lerp_(averaged, [p.detach() for p in params], 1 - ema)
        losses.append(loss.item())
        if step % 100 == 0 or step == steps:
            log_curve("flow", step, steps, losses, started)
    if averaged is not None:
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in params], averaged)
    for module in (pipe.transformer, pipe.text_encoder, pipe.text_encoder_2):
        module.eval()


def evaluate(folder: Path, seeds: int, grid: Path | None, device: str, **guidance) -> dict:
    """Test reward at the default sampling (25-step ODE, the guidance the folder records unless given)."""
    from mixgrpo.shapes.evaluation import evaluate_shapes
    from mixgrpo.plots import save_sample_grid
    from mixgrpo.models import load_flow_model

    model = load_flow_model(folder, device=device, **guidance)
    report = evaluate_shapes(model, test_prompts(), seeds=range(seeds), steps=25, shift=SHIFT,
                             resolution=RESOLUTION)
    if grid is not None:
        save_sample_grid(report["images"][:48], report["prompts"][:48], grid, columns=8)
    report.pop("images")
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=EMBEDDED_DIR, help="folder to write the pipeline to")
    parser.add_argument("--grid", type=Path, default=Path("docs/embedded_samples.png"), help="sample grid PNG")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--renders", type=int, default=16, help="renders per training prompt")
    parser.add_argument("--vae-steps", type=int, default=1200)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--vae-crop", type=int, default=64, help="side of the random training crops")
    parser.add_argument("--vae-beta", type=float, default=1e-3, help="KL weight (per latent element)")
    parser.add_argument("--vae-anchor", type=float, default=1.0, help="weight of the colour anchor on latent channels 0-2")
    parser.add_argument("--vae-shape-anchor", type=float, default=0.0,
                        help="weight of the shape anchor on latent channels 3-5 (0: off; the recorded "
                             "v3, v3.1 and v3.2 runs use 1.0; on its own, in v1, it gave 0.073 against 0.083 without)")
    parser.add_argument("--vae-perturb", action="store_true",
                        help="train the decoder on noised and blurred latents (perturb_latents), so that "
                             "imprecise latents still decode to clean shapes")
    parser.add_argument("--vae-semantic", action="store_true",
                        help="only the anchored channels (colour 0-2, shape kind 3-5) carry the picture; the "
                             "others are noise to the decoder and pulled to 0 in the encoder (hide_free_channels)")
    parser.add_argument("--vae-anchor-blur", type=float, default=0.0,
                        help="Gaussian width (latent cells) of the colour and shape anchors' targets (0: off)")
    parser.add_argument("--text-steps", type=int, default=600,
                        help="steps of text-encoder pretraining on the prompt grammar (0: off; not with --finetune-from)")
    parser.add_argument("--text-lr", type=float, default=3e-3)
    parser.add_argument("--flow-steps", type=int, default=3400)
    parser.add_argument("--flow-lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ema", type=float, default=0.0, help="EMA decay of the flow weights (0: off)")
    parser.add_argument("--high-noise", type=float, default=0.0,
                        help="share of the flow stage's σ draws taken from U(0.6, 1), where shapes form")
    parser.add_argument("--caption-dropout", type=float, default=0.0,
                        help="share of flow samples trained on the empty prompt (for classifier-free guidance)")
    parser.add_argument("--cfg-scale", type=float, default=None,
                        help="classifier-free guidance scale recorded in mixgrpo.json as the model's default "
                             "sampling (empty negative prompt; needs --caption-dropout training; 1 = none; "
                             "default: the --finetune-from model's, else 1)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast in the flow stage (weights stay fp32)")
    parser.add_argument("--finetune-from", type=Path, default=None,
                        help="start from a saved pipeline (e.g. the embedded model): its VAE and latent "
                             "normalisation stay, only the flow stage runs (architecture flags are ignored)")
    for field in ARCHITECTURE_FLAGS:
        parser.add_argument("--" + field.replace("_", "-"), type=int, default=getattr(ARCHITECTURE, field),
                            help="architecture (default: the shipped model's)")
    parser.add_argument("--device", default="cpu", help="cpu for the recorded run; cuda to explore recipes")
    parser.add_argument("--eval-seeds", type=int, default=4, help="samples per test prompt in the evaluation")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.vae_semantic and args.vae_shape_anchor <= 0:
        parser.error("--vae-semantic keeps only the anchored channels: it needs --vae-shape-anchor > 0 "
                     "(e.g. --vae-shape-anchor 1.0), or the shape-kind channels 3-5 carry nothing defined")

    started = time.time()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    prompts = train_prompts()
    words = sorted({w for p in prompts + test_prompts() for w in p.split()})
    arch = dataclasses.replace(ARCHITECTURE, **{f: getattr(args, f) for f in ARCHITECTURE_FLAGS})
    base = read_settings(args.finetune_from) if args.finetune_from else None
    if base is not None and "architecture" not in base:
        raise ModelLoadError(f"--finetune-from {args.finetune_from}: no {SETTINGS_FILE} with an architecture there; "
                             "pass a folder this script wrote (e.g. the embedded model's).")
    if base is not None:
        from diffusers import FluxPipeline

        arch = dataclasses.replace(ARCHITECTURE, **base["architecture"])
        pipe = FluxPipeline.from_pretrained(str(args.finetune_from)).to(args.device)
    else:
        pipe = build_tiny_flux(None, arch, seed=args.seed, words=words).to(args.device)
    n_params = {k: sum(p.numel() for p in getattr(pipe, k).parameters())
                for k in ("transformer", "vae", "text_encoder", "text_encoder_2")}
    print(f"parameters: {n_params} (total {sum(n_params.values()) / 1e6:.2f} M)", flush=True)

    images, masks, owners = make_dataset(prompts, args.renders, args.seed)
    print(f"data: {len(images)} renders of {len(prompts)} prompts ({time.time() - started:.0f}s)", flush=True)
    if base is None:
        train_vae(pipe.vae, images, args.vae_steps, args.vae_batch, args.vae_lr, args.vae_beta, args.vae_crop, gen,
                  args.vae_anchor, masks, args.vae_shape_anchor, args.vae_perturb, args.vae_semantic,
                  args.vae_anchor_blur)
    del masks  # only the VAE's shape anchor needs them
    latents = encode_latents(pipe.vae, images, keep_normalisation=base is not None)
    pipe.vae.requires_grad_(False)
    vae_reward = reconstruction_reward(pipe.vae, args.seed)
    print(f"vae: round trips of test renders score {vae_reward:.3f} ({time.time() - started:.0f}s)", flush=True)
    print(f"latents: {tuple(latents.shape)}, shift {pipe.vae.config.shift_factor:.4f}, "
          f"scale {pipe.vae.config.scaling_factor:.4f} ({time.time() - started:.0f}s)", flush=True)
    ids_clip, ids_t5 = tokenize(pipe, prompts)
    if base is None and args.text_steps > 0:
        pretrain_text(pipe, prompts, ids_clip, ids_t5, args.text_steps, args.text_lr, 128, gen)
    train_flow(pipe, latents, owners, ids_clip, ids_t5, args.flow_steps, args.batch, args.flow_lr,
               args.ema, gen, args.high_noise, args.bf16, args.caption_dropout)
    train_seconds = time.time() - started
    command = "python scripts/pretrain_embedded.py " + " ".join(argv or sys.argv[1:])
    if base is not None:  # the record covers the whole chain, from scratch
        command = base["pretrain"]["command"] + " && " + command
        train_seconds += base["pretrain"]["seconds"]

    args.out.mkdir(parents=True, exist_ok=True)
    # the training shift, fixed: a plain FluxPipeline then samples as trained (no resolution-dependent μ)
    pipe.register_modules(scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config, shift=SHIFT,
                                                                     use_dynamic_shifting=False))
    pipe.to("cpu").save_pretrained(str(args.out))
    pretrain = {"command": command,
                "seconds": round(train_seconds), "device": args.device, "parameters": n_params,
                "vae_reconstruction_reward": round(vae_reward, 4)}
    cfg_scale = args.cfg_scale if args.cfg_scale is not None else (base or {}).get("cfg_scale", 1.0)
    guidance = {"cfg_scale": cfg_scale} if cfg_scale != 1.0 else {}
    write_settings(args.out, architecture=arch, pretrain=pretrain, **guidance)
    report = evaluate(args.out, args.eval_seeds, args.grid, args.device)
    results = {"evaluation": {k: v for k, v in report.items() if k != "prompts"}}
    if guidance:  # what the same weights score without guidance, for comparison
        plain = evaluate(args.out, args.eval_seeds, None, args.device, cfg_scale=1.0)
        results["evaluation_unguided"] = {k: plain[k] for k in ("mean", "per_category")}
        print(f"without guidance: test reward {plain['mean']:.3f}; per category {plain['per_category']}", flush=True)
    write_settings(args.out, architecture=arch, pretrain=pretrain, **guidance, **results)
    print(f"trained in {train_seconds / 60:.1f} min; test reward {report['mean']:.3f}"
          f"{f' (cfg {cfg_scale:g})' if guidance else ''}; per category {report['per_category']}", flush=True)


if __name__ == "__main__":
    sys.exit(run_command(main))

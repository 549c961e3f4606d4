"""Full-size FLUX.1-dev architecture, random bf16 weights: seconds per iteration, peak memory and HFU.

    python -m benchmarks.gpu_flux                       # CUDA: 512² and 720², DanceGRPO 25/14, MixGRPO, Flash*
    python -m benchmarks.gpu_flux --preset tiny --device cpu --resolutions 64   # the same code path, tiny

Each row is one real trainer iteration (:class:`trainer.iteration.Trainer`: shared-trunk rollout, VAE
decode, shapes reward, PPO-clip update with LoRA rank 64 and gradient checkpointing) after one
warm-up iteration per resolution. The transformer has FLUX.1-dev's shape (19 double + 38 single
blocks, 3072 wide, 16-channel latents, guidance embedding) and random weights; the VAE has FLUX's
shape; the text encoders are small random stand-ins that emit FLUX's conditioning sizes (T5 4096 ×
512 tokens, CLIP pooled 768), encoded once per prompt and cached like the trainer does.

Hardware FLOP utilisation (the ``mfu`` key and the table's "HFU" column)::

    HFU = (network_evals · F_fwd + trained_rows · F_train) / seconds / peak

``F_fwd`` (one forward of one sample) and ``F_train = 3·F_fwd`` are given by :func:`forward_flops`;
``trained_rows`` is window steps × samples (MixGRPO, Flash*) or 14 × samples (DanceGRPO 25/14).
``peak`` is the GPU's dense bf16 rate (H100/H200 SXM: 989 TFLOP/s). ``F_train`` counts the recomputation
that full checkpointing does; the model's own FLOPs (``2·F_fwd`` per trained row, the MFU of
:mod:`benchmarks.gpu_table1`) leave it out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks import write_table_file
from mixgrpo.algorithm.algorithms import get_algorithm
from mixgrpo.cli import add_debug_flag, run_command
from mixgrpo.models.gpu import configure_attention

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
ROWS = (("DanceGRPO 25/14", "dancegrpo"), ("MixGRPO", "mixgrpo"), ("MixGRPO-Flash*", "flash_star"))
PRESETS = {
    # FLUX.1-dev's transformer/config.json
    "flux-dev": dict(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                     joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=(16, 56, 56),
                     vae_channels=(128, 256, 512, 512), vae_layers=2, vae_groups=32, text_tokens=512),
    # FLUX.1-dev's blocks, 4 double + 8 single of its 19 + 38: the same per-block work in a fifth of the time
    "flux-dev-slice": dict(num_layers=4, num_single_layers=8, attention_head_dim=128, num_attention_heads=24,
                           joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=(16, 56, 56),
                           vae_channels=(128, 256, 512, 512), vae_layers=2, vae_groups=32, text_tokens=512),
    # FLUX's layout at a third of the width: a full fine-tune with FSDP2 fits one GPU in seconds
    "flux-small": dict(num_layers=2, num_single_layers=4, attention_head_dim=128, num_attention_heads=8,
                       joint_attention_dim=1024, pooled_projection_dim=256, axes_dims_rope=(16, 56, 56),
                       vae_channels=(32, 64, 128, 128), vae_layers=1, vae_groups=32, text_tokens=128),
    "tiny": dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                 joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
                 vae_channels=(16, 16, 16, 16), vae_layers=1, vae_groups=8, text_tokens=16),
}


def device_name(device: str) -> str:
    """The GPU's name (``torch.cuda.get_device_name``), or "CPU"."""
    return torch.cuda.get_device_name() if str(device).startswith("cuda") else "CPU"


def peak_rate(device: str) -> float | None:
    """The device's dense bf16 FLOP/s from :data:`PEAK_BF16` (None: unknown, e.g. a CPU)."""
    name = device_name(device)
    return next((rate for key, rate in PEAK_BF16.items() if key in name), None)


def build_pipeline(preset: str, device: str, dtype: torch.dtype):
    """A random-weight FluxPipeline with the preset's transformer and VAE shapes."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from mixgrpo.models.tiny import clip_tokenizer, t5_tokenizer
    from mixgrpo.shapes import train_prompts

    p = PRESETS[preset]
    words = sorted({w for prompt in train_prompts() for w in prompt.split()})
    tok, tok2 = clip_tokenizer(words), t5_tokenizer(words)
    torch.manual_seed(0)
    with torch.device(device):
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=p["num_layers"], num_single_layers=p["num_single_layers"],
            attention_head_dim=p["attention_head_dim"], num_attention_heads=p["num_attention_heads"],
            joint_attention_dim=p["joint_attention_dim"], pooled_projection_dim=p["pooled_projection_dim"],
            guidance_embeds=True, axes_dims_rope=p["axes_dims_rope"]).to(dtype)
        levels = len(p["vae_channels"])
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=p["vae_channels"],
                            down_block_types=("DownEncoderBlock2D",) * levels,
                            up_block_types=("UpDecoderBlock2D",) * levels, layers_per_block=p["vae_layers"],
                            norm_num_groups=p["vae_groups"],                            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                            use_post_quant_conv=False).to(dtype)
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=p["pooled_projection_dim"],
                                            intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                            max_position_embeddings=77)).to(dtype)
        t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=p["joint_attention_dim"], d_kv=16, d_ff=64,
                                     num_layers=1, num_heads=2)).to(dtype)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=tok, text_encoder_2=t5,
                        tokenizer_2=tok2, transformer=transformer), p["text_tokens"]


def write_pipeline_folder(preset: str, folder: str | Path, device: str = "cpu",
                          dtype: torch.dtype = torch.bfloat16) -> Path:
    """The preset's random pipeline saved in diffusers layout (safetensors in ``dtype``) with a ``mixgrpo.json``
    naming its text length: a folder ``python -m trainer.run --model`` loads like a downloaded FLUX.1-dev."""
    from mixgrpo.models.embedded import SETTINGS_FILE

    folder = Path(folder)
    pipe, text_tokens = build_pipeline(preset, device, dtype)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    (folder / SETTINGS_FILE).write_text(json.dumps({"max_sequence_length": text_tokens}) + "\n")
    return folder


def forward_flops(transformer, resolution: int, text_tokens: int) -> float:
    """Matrix-multiply FLOPs of one transformer forward for one sample.

    With ``d`` the width, ``L = N_img + N_txt`` tokens and ``N_img = (resolution / 16)²``, every
    double block has per stream q, k, v, out (4d²) and an MLP (8d²), every single block a fused
    qkv + MLP-in (7d²) and an output over 5d (5d²); attention adds QKᵀ and AV (2·L²·d each)::

        F_fwd = (n_double + n_single) · (2·12d²·L + 4·L²·d)

    AdaLN modulation, embedders and the output layer act once per sample or cost < 1 % and are left out.
    ``F_train = 3·F_fwd``: the forward, its recomputation under gradient checkpointing, and the
    backward to the activations (base weights are frozen; LoRA's own gradients are < 1 %).
    """
    c = transformer.config
    d = c.num_attention_heads * c.attention_head_dim
    tokens = (resolution // 16) ** 2 + text_tokens
    return float((c.num_layers + c.num_single_layers) * (2 * 12 * d * d * tokens + 4 * tokens * tokens * d))


def trained_rows(algo: str, window: int, steps: int, samples: int, dance_fraction: float) -> int:
    per_sample = max(1, int(dance_fraction * (steps - 1))) if get_algorithm(algo).sde_everywhere else window
    return per_sample * samples


def make_trainer(model, params, algo: str, resolution: int, args):
    from mixgrpo.rewards import load_rewards
    from mixgrpo.shapes import train_prompts
    from trainer.config import TrainConfig
    from trainer.iteration import Trainer

    cfg = TrainConfig(algo=algo, resolution=resolution, group_size=args.group, prompts_per_iter=1,
                      lora_rank=args.lora_rank, lora_alpha=args.lora_rank, checkpointing="full",
                      mixed_precision="bf16" if model.device.type == "cuda" else "no", steps=25, window=4,
                      updates_per_iter=1, micro_batch=args.micro_batch, shift=3.0, learning_rate=1e-5,
                      device=model.device.type)
    return Trainer(cfg, model, load_rewards("shapes", device=str(model.device)), train_prompts(), params)


def run(args) -> list[dict]:
    from mixgrpo.models.flux import FluxAdapter

    device = torch.device(args.device)
    if not args.cudnn_attention:
        configure_attention(device)  # as the trainer does: no cuDNN attention on CUDA
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    started = time.perf_counter()
    pipe, text_tokens = build_pipeline(args.preset, args.device, dtype)
    model = FluxAdapter(pipe, max_sequence_length=text_tokens)
    params = model.add_lora(rank=args.lora_rank, alpha=args.lora_rank)
    model.transformer.enable_gradient_checkpointing()
    n_params = sum(p.numel() for p in model.transformer.parameters())
    print(f"transformer {n_params / 1e9:.2f} B parameters, LoRA {sum(p.numel() for p in params) / 1e6:.1f} M, "
          f"built in {time.perf_counter() - started:.0f}s", flush=True)
    peak = peak_rate(args.device)
    rows = []
    for resolution in args.resolutions:
        f_fwd = forward_flops(model.transformer, resolution, text_tokens)
        f_train = 3 * f_fwd
        print(f"{resolution}²: {f_fwd / 1e12:.1f} TFLOP per forward per sample", flush=True)
        warm = make_trainer(model, params, "mixgrpo", resolution, args)
        warm.iteration(0, [0])  # kernels, allocator and cached conditioning warm up once per resolution
        for label, algo in ROWS:
            trainer = make_trainer(model, params, algo, resolution, args)
            trainer.cond_cache = warm.cond_cache
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            stats = trainer.iteration(1, [0])
            if device.type == "cuda":
                torch.cuda.synchronize()
            flops = stats["network_evals"] * f_fwd + trained_rows(algo, 4, 25, args.group, 0.6) * f_train
            row = {"resolution": resolution, "row": label, "algo": algo, "nfe": stats["nfe"],
                   "network_evals": stats["network_evals"], "rollout_s": stats["rollout_s"],
                   "reward_s": stats["reward_s"], "update_s": stats["update_s"], "seconds": stats["seconds"],
                   "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
                   "pflop": flops / 1e15, "mfu": flops / stats["seconds"] / peak if peak else None,
                   "max_abs_log_ratio": stats["first_max_abs_log_ratio"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = {r["resolution"]: r["seconds"] for r in rows if r["algo"] == "dancegrpo"}
    for r in rows:
        r["ratio_to_dancegrpo"] = r["seconds"] / base[r["resolution"]]
    return rows


def to_markdown(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| Resolution | Row | NFE | network evals / group | rollout s | reward s | update s | s / iteration "
             "| ÷ DanceGRPO | peak GiB | PFLOP | HFU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "–"
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "–"
        lines.append(f"| {r['resolution']}² | {r['row']} | {r['nfe']} | {r['network_evals']} | {r['rollout_s']:.1f} "
                     f"| {r['reward_s']:.1f} | {r['update_s']:.1f} | {r['seconds']:.1f} | "
                     f"{r['ratio_to_dancegrpo']:.2f} | {mem} | {r['pflop']:.2f} | {mfu} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="flux-dev")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[512, 720])
    parser.add_argument("--group", type=int, default=12)
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=12, help="samples per forward/backward in the update")
    parser.add_argument("--cudnn-attention", action="store_true", help="allow PyTorch's cuDNN SDPA backend")
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown table (and .json beside it)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    rows = run(args)
    gpu = device_name(args.device)
    precision = "bf16" if args.device.startswith("cuda") else "fp32"
    header = (f"# {args.preset}, random {precision} weights, on {gpu}\n\nGroup {args.group}, LoRA rank {args.lora_rank}, "
              f"gradient checkpointing, 25 steps, window 4, one prompt per iteration, micro-batch "
              f"{args.micro_batch}. Command: `python -m benchmarks.gpu_flux {' '.join(sys.argv[1:] if argv is None else argv)}`")
    write_table_file(args.out, to_markdown(rows, header), rows)
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

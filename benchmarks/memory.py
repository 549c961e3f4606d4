"""Memory plan of a FLUX.1-dev run: each phase's peak per process, and GPU measurements beside the estimate.

    python -m benchmarks.memory [--lora-rank 64] [--micro-batch 1] [--samples 12]

Every size is counted from the real classes built on the meta device (no weights): FLUX.1-dev's
transformer (diffusers ``FluxTransformer2DModel`` defaults, guidance embedding), its VAE, T5-XXL
(``t5-v1_1-xxl``'s shape) and CLIP-L's text tower. The reward models are HPS v2.1 + PickScore, two
OpenCLIP ViT-H-14 (986 M parameters each, OpenCLIP's model card), kept in float32.

The load path is the trainer's under ``--mixed-precision bf16`` (docs/trainer.md, "One GPU"): frozen
weights in bf16, trained weights in fp32 with fp32 gradients and two AdamW moments. The formulas,
per setting and per phase (load, decode, update), are in ``trainer/memory_plan.py``, which
``python -m trainer.run --dry-run`` uses too. The conditioning cache lives in CPU memory: 512 × 4096 T5
rows + CLIP's pooled 768 in bf16, about 4.2 MB per prompt. "fits 80 GB" leaves 10 % for the
allocator and the CUDA context.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mixgrpo.cli import add_debug_flag, run_command

from trainer.memory_plan import GB, REWARD_PARAMS, host_memory_per_node, phases, transformer_counts

from . import write_results

RESULTS = Path(__file__).resolve().parent / "results"
GIB = 2**30
FITS = 0.9 * 80 * GB
HEADLINE_REWARDS = ("hpsv2.1", "pickscore")


def transformer_sizes(lora_rank: int, **config) -> dict[str, int]:
    """Parameter counts of a FLUX transformer (FLUX.1-dev's defaults, or ``config``) built on the meta device."""
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=True, **config)
    return transformer_counts(model, lora_rank)


def flux_dev_sizes(lora_rank: int) -> dict[str, int]:
    """The transformer's counts plus FLUX.1-dev's VAE, T5-XXL and CLIP-L text tower (meta device)."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    sizes = transformer_sizes(lora_rank)
    with torch.device("meta"):
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False)
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                     num_heads=64, feed_forward_proj="gated-gelu"))
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                            num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77))
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    return sizes | {"vae": count(vae), "text_encoders": count(t5) + count(clip), "vae_channels": 128}


# the process counts each setting is shown for: one process is never wrapped, so its full fine-tune
# is the unsharded row (the same formulas as FSDP2 with N = 1)
SETTINGS = {"LoRA, DDP": (1, 8), "full, one process": (1,), "LoRA, FSDP2": (8, 32), "full, FSDP2": (8, 32),
            "full, FSDP2 + CPU offload": (8, 32)}


PER_NODE = 8  # GPUs of a node, for the host memory of a node


def plan(sizes: dict[str, int], micro_batch: int, samples: int = 12,
         rewards: tuple[str, ...] = HEADLINE_REWARDS) -> list[dict]:
    reward_bytes = 4 * sum(REWARD_PARAMS[name] for name in rewards)
    rows = []
    for setting, counts in SETTINGS.items():
        for processes in counts:
            for side in (512, 720):
                figures = phases(setting, sizes, processes, side, micro_batch, samples, reward_bytes)
                figures |= host_memory_per_node(setting, sizes, processes, PER_NODE, reward_bytes)
                rows.append({"setting": setting, "processes": processes, "side": side,
                             **{k: v / GB for k, v in figures.items()}, "fits_80gb": figures["gpu"] <= FITS})
    return rows


# GPU measurements of the trainer's iteration (peak torch.cuda.max_memory_allocated, weights included):
# LoRA rank 64, one process, group 12, micro-batch 12, gradient checkpointing, bf16 frozen weights,
# small stand-in text encoders, the shapes reward (no reward model)
MEASURED = (
    {"what": "FLUX.1-dev, 512², benchmarks.gpu_flux (H100)", "config": {}, "side": 512, "gib": 32.2,
     "source": "benchmarks/results/gpu.md"},
    {"what": "flux-dev-slice (4 + 8 blocks), 512², python -m trainer.run (H200)",
     "config": {"num_layers": 4, "num_single_layers": 8}, "side": 512, "gib": 10.5,
     "source": "benchmarks/results/gpu_cli.md"},
)


def measured_beside_estimate() -> list[dict]:
    """Each GPU measurement beside the plan's update peak for its configuration."""
    rows = []
    for m in MEASURED:
        sizes = transformer_sizes(64, **m["config"]) | {"vae": 0, "text_encoders": 0, "vae_channels": 128}
        estimate = phases("LoRA, DDP", sizes, 1, m["side"], 12, 12, reward_bytes=0)["update"]
        rows.append({**m, "estimate_gib": estimate / GIB, "measured_over_estimate": m["gib"] / (estimate / GIB)})
    return rows


def markdown(sizes: dict[str, int], rows: list[dict], checks: list[dict], micro_batch: int, samples: int) -> str:
    head = (f"# Memory plan: FLUX.1-dev (computed, `python -m benchmarks.memory`)\n\n"
            f"Transformer: {sizes['params'] / 1e9:.2f} B parameters in {sizes['blocks']} blocks (largest "
            f"{sizes['largest_block'] / 1e6:.0f} M); LoRA rank {sizes['lora_rank']}: {sizes['lora'] / 1e6:.1f} M; "
            f"text encoders (T5-XXL + CLIP-L) {sizes['text_encoders'] / 1e9:.2f} B, VAE {sizes['vae'] / 1e6:.0f} M; "
            f"HPS v2.1 + PickScore in fp32 {4 * sum(REWARD_PARAMS[r] for r in HEADLINE_REWARDS) / GB:.1f} GB. "
            "GB per process, bf16 "
            f"frozen weights, micro-batch {micro_batch}, {samples} samples per process, gradient checkpointing; "
            "formulas in `trainer/memory_plan.py`. Host: the CPU memory a process peaks at (loading, or offloaded "
            "shards), for the main process (it reads the transformer), each other, and the main process's node "
            f"of {PER_NODE} (the Python and CUDA runtime of each process, a few GB, comes on top).\n\n"
            "| setting | processes | side | weights | gradients | AdamW | transient | activations | AdamW temp. "
            "| load peak | decode peak | update peak | GPU peak | CPU (offload) | fits 80 GB | host: main | host: other "
            f"| host: node of {PER_NODE} |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['setting']} | {r['processes']} | {r['side']}² | {r['weights']:.1f} | {r['gradients']:.2f} | "
             f"{r['adamw']:.2f} | {r['transient']:.1f} | {r['activations']:.2f} | {r['temporaries']:.2f} | "
             f"{r['load']:.1f} | {r['decode']:.1f} | {r['update']:.1f} | {r['gpu']:.1f} | {r.get('cpu', 0):.1f} | "
             f"{'yes' if r['fits_80gb'] else 'no'} | {r['host_main']:.1f} | {r['host_other']:.1f} | "
             f"{r['host_node']:.1f} |" for r in rows]
    check = ["", "## Measured beside the estimate", "",
             "The update peak of the plan (LoRA rank 64, one process, micro-batch 12, no reward model, stand-in "
             "text encoders) against the peak GPU memory of a real iteration:", "",
             "| run | estimate GiB | measured GiB | measured ÷ estimate | source |", "|---|---|---|---|---|"]
    check += [f"| {c['what']} | {c['estimate_gib']:.1f} | {c['gib']:.1f} | {c['measured_over_estimate']:.2f} | "
              f"{c['source']} |" for c in checks]
    return head + "\n".join(lines) + "\n" + "\n".join(check) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=1, help="samples per forward/backward pass")
    parser.add_argument("--samples", type=int, default=12, help="samples each process rolls out and decodes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for memory.md and memory.json")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    sizes = flux_dev_sizes(args.lora_rank) | {"lora_rank": args.lora_rank}
    rows = plan(sizes, args.micro_batch, args.samples)
    checks = measured_beside_estimate()
    text = markdown(sizes, rows, checks, args.micro_batch, args.samples)
    write_results(args.out, "memory", text, {"sizes": sizes, "rows": rows, "measured": json.loads(json.dumps(checks))})
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

"""Memory plan of a FLUX.1-dev run: per-process bytes of weights, gradients, AdamW states and activations.

    python -m benchmarks.memory [--lora-rank 32] [--micro-batch 1]

The transformer is built on the meta device from diffusers' ``FluxTransformer2DModel`` defaults with
``guidance_embeds=True`` (FLUX.1-dev): its parameter count and block sizes, no weights. With ``P``
transformer parameters, ``R`` LoRA parameters (rank r on ``to_q``, ``to_k``, ``to_v``, ``to_out.0``,
as the trainer injects it), ``B`` the largest block's parameters and ``N`` processes, the trainer
holds per process (fp32 master weights; bf16 compute):

=================  =============================  ==============  ================  =====================
setting            weights                        gradients       AdamW (m, v)      transient
=================  =============================  ==============  ================  =====================
LoRA, DDP          4P + 4R                        4R              8R                —
LoRA, FSDP2        (4P + 4R)/N                    4R/N            8R/N              2·2B (bf16 blocks)
full, FSDP2        4P/N                           4P/N            8P/N              2·2B + 4B (grad)
full, one process  4P                             4P              8P                —
full, FSDP2 + CPU  0 (CPU: 16P/N)                 0               0                 2·2B + 4B
=================  =============================  ==============  ================  =====================

"transient": FSDP2 gathers one block (and prefetches the next) in bf16, and a full fine-tune holds
one block's unsharded fp32 gradient before reduce-scattering it.

Activations, per sample of a micro-batch, ``S`` tokens (image ``(side/16)²`` + 512 text),
``h = 3072``, bf16: with gradient checkpointing the input of each of the 57 blocks is kept,
``57·S·h·2`` bytes, plus one block's recomputation, about ``34·S·h`` bytes (the per-layer
activation count of a transformer layer with a fused attention kernel, Korthikanti et al. 2022);
without it, ``57·34·S·h`` bytes. The trainer backpropagates one transition at a time, so one
sample-step's activations are alive at once. Text encoders, VAE and the cached conditioning are
left out (the encoders are released once the prompts are encoded). "fits 80 GB" leaves 10 % for the
allocator and CUDA context.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixgrpo.cli import add_debug_flag, run_command

from . import write_results

RESULTS = Path(__file__).resolve().parent / "results"
GB = 1e9
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
BLOCKS = 57  # 19 double-stream + 38 single-stream blocks
HIDDEN = 3072
TEXT_TOKENS = 512


def flux_dev_sizes(lora_rank: int) -> dict[str, int]:
    """Parameter counts of the FLUX.1-dev transformer, built on the meta device (no weights)."""
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=True)
    blocks = list(model.transformer_blocks) + list(model.single_transformer_blocks)
    lora = sum(lora_rank * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in LORA_TARGETS))
    return {"params": sum(p.numel() for p in model.parameters()), "lora": lora, "blocks": len(blocks),
            "largest_block": max(sum(p.numel() for p in b.parameters()) for b in blocks)}


def model_state(setting: str, sizes: dict[str, int], processes: int) -> dict[str, float]:
    """Bytes per process of weights, gradients, optimizer states and transient gathered blocks (table above)."""
    P, R, B, N = sizes["params"], sizes["lora"], sizes["largest_block"], processes
    if setting == "LoRA, DDP":
        return {"weights": 4 * (P + R), "gradients": 4 * R, "adamw": 8 * R, "transient": 0}
    if setting == "LoRA, FSDP2":
        return {"weights": 4 * (P + R) / N, "gradients": 4 * R / N, "adamw": 8 * R / N, "transient": 4 * B}
    if setting == "full, FSDP2":
        return {"weights": 4 * P / N, "gradients": 4 * P / N, "adamw": 8 * P / N, "transient": 8 * B * (N > 1)}
    return {"weights": 0, "gradients": 0, "adamw": 0, "transient": 8 * B, "cpu": 16 * P / N}  # offloaded


def activations(side: int, micro_batch: int, checkpointing: bool = True) -> float:
    """Bytes of one transition's activations for ``micro_batch`` samples at ``side``² pixels."""
    tokens = (side // 16) ** 2 + TEXT_TOKENS
    per_block = 34 * tokens * HIDDEN
    saved = BLOCKS * tokens * HIDDEN * 2 + per_block if checkpointing else BLOCKS * per_block
    return micro_batch * saved


# the process counts each setting is shown for: one process is never wrapped, so its full fine-tune
# is the unsharded row (the same formulas as FSDP2 with N = 1)
SETTINGS = {"LoRA, DDP": (1, 8, 32), "full, one process": (1,), "LoRA, FSDP2": (8, 32), "full, FSDP2": (8, 32),
            "full, FSDP2 + CPU offload": (8, 32)}


def plan(sizes: dict[str, int], micro_batch: int) -> list[dict]:
    rows = []
    for setting, counts in SETTINGS.items():
        for processes in counts:
            state = model_state(setting.replace("one process", "FSDP2"), sizes, processes)
            for side in (512, 720):
                act = activations(side, micro_batch)
                gpu = state["weights"] + state["gradients"] + state["adamw"] + state["transient"] + act
                rows.append({"setting": setting, "processes": processes, "side": side,
                             **{k: v / GB for k, v in state.items()}, "activations": act / GB, "gpu": gpu / GB,
                             "fits_80gb": gpu <= 0.9 * 80 * GB})
    return rows


def markdown(sizes: dict[str, int], rows: list[dict], micro_batch: int) -> str:
    head = (f"# Memory plan: FLUX.1-dev (computed, `python -m benchmarks.memory`)\n\n"
            f"Transformer: {sizes['params'] / 1e9:.2f} B parameters in {sizes['blocks']} blocks (largest "
            f"{sizes['largest_block'] / 1e6:.0f} M); LoRA rank {sizes['lora_rank']}: {sizes['lora'] / 1e6:.1f} M. "
            f"GB per process, micro-batch {micro_batch}, gradient checkpointing on; formulas in "
            "`benchmarks/memory.py`. No GPU measurement in this table.\n\n"
            "| setting | processes | side | weights | gradients | AdamW | transient | activations | GPU total | "
            "CPU (offload) | fits 80 GB |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['setting']} | {r['processes']} | {r['side']}² | {r['weights']:.1f} | {r['gradients']:.2f} | "
             f"{r['adamw']:.2f} | {r['transient']:.1f} | {r['activations']:.2f} | {r['gpu']:.1f} | "
             f"{r.get('cpu', 0):.1f} | {'yes' if r['fits_80gb'] else 'no'} |" for r in rows]
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora-rank", type=int, default=32)
    parser.add_argument("--micro-batch", type=int, default=1, help="samples per forward/backward pass")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for memory.md and memory.json")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    sizes = flux_dev_sizes(args.lora_rank) | {"lora_rank": args.lora_rank}
    rows = plan(sizes, args.micro_batch)
    text = markdown(sizes, rows, args.micro_batch)
    write_results(args.out, "memory", text, {"sizes": sizes, "rows": rows})
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

"""MixGRPO Sampler vs ComfyUI's stock Euler inside ComfyUI, same model, grid, noise and batch, in one run.

    python -m benchmarks.sampler [--repeats 7] [--steps 25] [--batch 4] [--out benchmarks/results/sampler.md]

Rows (embedded model, 128², CPU): stock ``euler``; ours with an empty window (the same ODE);
ours with a 4-step SDE window; ours as MixGRPO-Flash (window 4 at step 0, DPM-Solver++ 2M, r̃ = 0.4)
and Flash* (r̃ = 0.2). Each row: median seconds of ``repeats`` runs (rows interleaved, so machine
noise hits all of them alike), network evaluations counted by wrapping the model, ratio to Euler.
Targets: empty window ≤ 1.05×, 4-step window ≤ 1.10× of Euler's time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mixgrpo.cli import add_debug_flag, run_command

REPO = Path(__file__).resolve().parents[1]

CODE = """
import json, statistics, time, torch
import nodes as comfy_nodes
from comfy_extras import nodes_custom_sampler as cs, nodes_sd3
from mixgrpo_pack.nodes.loaders import LoadMixGRPOModel, EMBEDDED
from mixgrpo_pack.nodes.sampling import MixGRPOSampler
torch.set_num_threads({threads})
model, clip, vae = LoadMixGRPOModel.execute(EMBEDDED, "none", 1.0).args
cond = comfy_nodes.CLIPTextEncode().encode(clip, "two red circles and a blue square")[0]
latent = nodes_sd3.EmptySD3LatentImage.execute(128, 128, {batch}).args[0]
sigmas = cs.BasicScheduler.execute(model, "simple", {steps}, 1.0).args[0]
guider = cs.BasicGuider.execute(model, cond).args[0]
noise = cs.RandomNoise.execute(0).args[0]
calls = []
inner = model.model.diffusion_model
original = inner.forward
def counting(*a, **k):
    calls.append(1)
    return original(*a, **k)
inner.forward = counting
def ours(**kw):
    args = dict(window_by="start step", window_start=0, window_percent=0.0, window_size=0, eta=0.7, sde_type="flow",
                solver="euler", flash_compression=1.0) | kw
    return MixGRPOSampler.execute(**args).args[0]
rows = {{
    "stock euler": cs.KSamplerSelect.execute("euler").args[0],
    "MixGRPO, empty window (ODE)": ours(),
    "MixGRPO, 4-step SDE window": ours(window_start=4, window_size=4),
    "MixGRPO-Flash (r=0.4)": ours(window_size=4, solver="dpm++ 2m midpoint", flash_compression=0.4),
    "MixGRPO-Flash* (r=0.2)": ours(window_size=4, solver="dpm++ 2m midpoint", flash_compression=0.2),
}}
times = {{name: [] for name in rows}}
nfe = {{}}
for name, sampler in rows.items():  # warm-up, and count network evaluations
    calls.clear()
    cs.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, latent)
    nfe[name] = len(calls)
for _ in range({repeats}):
    for name, sampler in rows.items():
        start = time.perf_counter()
        cs.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, latent)
        times[name].append(time.perf_counter() - start)
print(json.dumps({{name: {{"seconds": statistics.median(t), "nfe": nfe[name]}} for name, t in times.items()}}))
"""


def run(repeats: int, steps: int, batch: int, threads: int) -> dict:
    sys.path.insert(0, str(REPO / "tests" / "comfyui"))
    from comfy_setup import import_pack_code, run_in_comfyui

    code = import_pack_code(REPO) + CODE.format(repeats=repeats, steps=steps, batch=batch, threads=threads)
    result = run_in_comfyui(code, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-4000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def to_markdown(rows: dict, args) -> str:
    base = rows["stock euler"]["seconds"]
    lines = [f"# MixGRPO Sampler vs stock Euler in ComfyUI 0.3.75 (embedded model, 128², batch {args.batch}, "
             f"{args.steps} steps, CPU {args.threads} threads, median of {args.repeats})", "",
             "| Sampler | NFE | s / batch | ÷ stock euler |", "|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['nfe']} | {row['seconds']:.3f} | {row['seconds'] / base:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    rows = run(args.repeats, args.steps, args.batch, args.threads)
    table = to_markdown(rows, args)
    print(table)
    if args.out:
        args.out.write_text(table)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

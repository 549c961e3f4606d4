"""Old-policy rollout cost of DanceGRPO, MixGRPO, Flash and Flash*, side by side in one run.

A small conv velocity net on FLUX-shaped latents (16 channels, 16×16: a 128² image) stands in for
the model, so the figures measure the sampler: NFE per trajectory, network rows evaluated per
group (the shared pre-window trunk runs once per group), and wall time per group.

Windows follow each algorithm's training schedule over ``--iterations`` iterations (paper: 300):
MixGRPO progressive τ = 25, Flash progressive τ = 20, Flash* frozen at l = 0. Each distinct window
is timed and weighted by how many iterations use it, which equals the average over all iterations.
Modes are timed round-robin, median of ``--repeats``, so machine noise hits them alike.

    python -m benchmarks.rollout                 # CPU, group size 12, writes benchmarks/results/rollout.{md,json}
    python -m benchmarks.rollout --device cuda --width 128
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from mixgrpo import WindowSchedule, build_plan, dance_train_steps, get_algorithm, mixed_rollout
from mixgrpo.cli import add_debug_flag, run_command

RESULTS = Path(__file__).parent / "results"

# (row label, plan mode, window strategy settings, share trunk)
ROWS = [
    ("DanceGRPO", "dancegrpo", None, False),
    ("MixGRPO", "mixgrpo", dict(strategy="progressive", shift_interval=25), True),
    ("MixGRPO, no shared trunk", "mixgrpo", dict(strategy="progressive", shift_interval=25), False),
    ("MixGRPO-Flash", "flash", dict(strategy="progressive", shift_interval=20), True),
    ("MixGRPO-Flash*", "flash_star", dict(strategy="frozen", start=0), True),
]


class ConvVelocityNet(torch.nn.Module):
    """Conv net ``v(x, σ, cond)``: σ and a pooled text vector modulate the hidden channels."""

    def __init__(self, channels: int = 16, width: int = 64, cond_dim: int = 32):
        super().__init__()
        self.inp = torch.nn.Conv2d(channels, width, 3, padding=1)
        self.mid = torch.nn.Conv2d(width, width, 3, padding=1)
        self.out = torch.nn.Conv2d(width, channels, 3, padding=1)
        self.embed = torch.nn.Linear(cond_dim + 16, width)
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), 8)))

    def forward(self, x, sigma, cond):
        angles = sigma[:, None] * self.freqs
        emb = self.embed(torch.cat([cond, angles.sin(), angles.cos()], dim=1))[:, :, None, None]
        h = torch.nn.functional.silu(self.inp(x.to(self.inp.weight.dtype)) + emb)
        h = torch.nn.functional.silu(self.mid(h) + emb)
        return self.out(h)


def window_weights(settings: dict | None, steps: int, window: int, iterations: int) -> Counter:
    """How many of ``iterations`` use each window start (DanceGRPO: no window, start 0)."""
    if settings is None:
        return Counter({0: iterations})
    return Counter(WindowSchedule(num_steps=steps, size=window, **settings).lefts(iterations))


def trained_steps(plan, steps: int) -> int:
    """Steps trained per sample: the window, or DanceGRPO's random ⌊0.6·(T − 1)⌋ of its SDE steps."""
    if get_algorithm(plan.info["mode"]).sde_everywhere:
        return len(dance_train_steps(steps, 1)[0])
    return len(plan.recorded_steps)


def time_rollout(net, plan, noise, cond, group_size, share_trunk, seed) -> tuple[float, int]:
    gen = torch.Generator(device=noise.device).manual_seed(seed)
    if noise.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = mixed_rollout(net, noise, plan, cond, group_size=group_size, generator=gen, share_trunk=share_trunk)
    if noise.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, out.network_evals


def run(args) -> list[dict]:
    torch.manual_seed(0)
    device = torch.device(args.device)
    net = ConvVelocityNet(width=args.width).to(device).eval()
    noise = torch.randn(1, 16, args.latent, args.latent, device=device)
    cond = torch.randn(1, 32, device=device)

    jobs = []  # (row, start, weight, plan)
    for label, mode, settings, share in ROWS:
        for start, weight in sorted(window_weights(settings, args.steps, args.window, args.iterations).items()):
            plan = build_plan(mode, num_steps=args.steps, window_start=start, window_size=args.window)
            jobs.append((label, share, start, weight, plan))

    for _, share, _, _, plan in jobs[:3]:  # warm-up (allocator, kernels)
        time_rollout(net, plan, noise, cond, args.group_size, share, 0)
    timings = {i: [] for i in range(len(jobs))}
    evals = {}
    for rep in range(args.repeats):
        for i, (_, share, _, _, plan) in enumerate(jobs):
            seconds, evals[i] = time_rollout(net, plan, noise, cond, args.group_size, share, rep)
            timings[i].append(seconds)

    rows = []
    for label, *_ in ROWS:
        mine = [i for i, job in enumerate(jobs) if job[0] == label]
        total = sum(jobs[i][3] for i in mine)
        avg = lambda values: sum(values[i] * jobs[i][3] for i in mine) / total  # noqa: E731
        rows.append({
            "row": label,
            "nfe_per_trajectory": avg({i: jobs[i][4].nfe for i in mine}),
            "network_evals_per_group": avg(evals),
            "unshared_evals_per_group": avg({i: jobs[i][4].nfe * args.group_size for i in mine}),
            "trained_steps": trained_steps(jobs[mine[0]][4], args.steps),
            "seconds_per_group": avg({i: statistics.median(timings[i]) for i in mine}),
        })
    base = rows[0]
    for r in rows:
        r["time_ratio"] = r["seconds_per_group"] / base["seconds_per_group"]
        r["evals_ratio"] = r["network_evals_per_group"] / base["network_evals_per_group"]
    return rows


def to_markdown(rows: list[dict], args) -> str:
    head = (f"Rollout benchmark: group size {args.group_size}, T = {args.steps}, window {args.window}, "
            f"windows averaged over {args.iterations} iterations, conv net width {args.width} on "
            f"16×{args.latent}×{args.latent} latents, device {args.device} "
            f"({torch.get_num_threads()} threads), median of {args.repeats}.\n\n")
    lines = ["| Row | NFE / trajectory | network evals / group | without trunk sharing (N × NFE) "
             "| trained steps | s / group | time ÷ DanceGRPO | evals ÷ DanceGRPO |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['nfe_per_trajectory']:.2f} | {r['network_evals_per_group']:.1f} | "
                     f"{r['unshared_evals_per_group']:.1f} | {r['trained_steps']} | {r['seconds_per_group']:.4f} | "
                     f"{r['time_ratio']:.2f} | {r['evals_ratio']:.2f} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group-size", type=int, default=12, help="samples per prompt group (paper: 12)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps T (paper: 25)")
    parser.add_argument("--window", type=int, default=4, help="window size w (paper: 4)")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations the windows span")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per window (median)")
    parser.add_argument("--width", type=int, default=64, help="hidden channels of the conv net")
    parser.add_argument("--latent", type=int, default=16, help="latent side length (16 = 128² image)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for rollout.md and rollout.json")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    rows = run(args)
    table = to_markdown(rows, args)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rollout.md").write_text(table)
    (args.out / "rollout.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()},
                                                       "rows": rows}, indent=2))
    mix = next(r for r in rows if r["row"] == "MixGRPO")
    print(f"MixGRPO network evaluations per group: {mix['network_evals_per_group']:.1f} with the shared trunk "
          f"vs N × 25 = {args.group_size * args.steps} without.")
    return rows


if __name__ == "__main__":
    sys.exit(run_command(main))

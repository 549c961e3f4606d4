"""The shapes reward on one CPU core: throughput, and honesty per prompt category.

For every test prompt (and, as a reference row, every train prompt) ``--seeds`` ground-truth
images are rendered at ``--size``² and scored three ways:

- **GT**: against their own prompt (should be ≈ 1);
- **mismatched**: against another prompt of the same split (a seeded derangement: no image keeps
  its prompt), which measures how much credit an unrelated image gets;
- **noise**: uniform noise images against the prompts;
- **smooth noise**: 8×8 uniform noise enlarged bilinearly — large coloured blobs, some of them
  palette-like, the kind of image that fools a reward which does not count unrequested objects.

Throughput is the median over ``--repeats`` of scoring ``--batch`` rendered images at ``--size``²
with ``torch.set_num_threads(1)``; rendering throughput is measured alike.

    python -m benchmarks.shapes_reward        # writes benchmarks/results/shapes_reward.{md,json}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mixgrpo.cli import add_debug_flag, run_command
from mixgrpo.shapes import (
    derangement,
    CATEGORIES,
    parse_prompt,
    render_batch,
    score_shapes,
    test_prompts,
    train_prompts,
)

RESULTS = Path(__file__).parent / "results"


def evaluate(prompts: list[str], seeds: int, size: int) -> dict[str, list[float]]:
    """GT, mismatched and noise scores of every (prompt, seed), in prompt-major order."""
    out = {"gt": [], "mismatched": [], "noise": [], "smooth_noise": [], "category": []}
    for seed in range(seeds):
        images = render_batch(prompts, size=size, seed=1000 * seed)
        others = [prompts[j] for j in derangement(len(prompts), seed)]
        gen = torch.Generator().manual_seed(seed)
        noise = torch.rand(len(prompts), 3, size, size, generator=gen)
        blobs = F.interpolate(torch.rand(len(prompts), 3, 8, 8, generator=gen), size=(size, size), mode="bilinear")
        out["gt"] += score_shapes(images, prompts)[0].tolist()
        out["mismatched"] += score_shapes(images, others)[0].tolist()
        out["noise"] += score_shapes(noise, prompts)[0].tolist()
        out["smooth_noise"] += score_shapes(blobs, prompts)[0].tolist()
        out["category"] += [parse_prompt(p).category for p in prompts]
    return out


def summarise(label: str, scores: dict[str, list[float]], keep) -> dict:
    idx = [i for i, c in enumerate(scores["category"]) if keep(c)]
    pick = {k: [scores[k][i] for i in idx] for k in ("gt", "mismatched", "noise", "smooth_noise")}
    return {"row": label, "images": len(idx), "gt_mean": statistics.fmean(pick["gt"]), "gt_min": min(pick["gt"]),
            "mismatched_mean": statistics.fmean(pick["mismatched"]), "noise_mean": statistics.fmean(pick["noise"]),
            "smooth_noise_mean": statistics.fmean(pick["smooth_noise"])}


def throughput(fn, count: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def run(args) -> dict:
    torch.set_num_threads(1)
    test, train = test_prompts(), train_prompts()
    test_scores = evaluate(test, args.seeds, args.size)
    rows = [summarise(f"test: {c}", test_scores, lambda x, c=c: x == c) for c in CATEGORIES]
    rows.append(summarise("test: all", test_scores, lambda x: True))
    rows.append(summarise("train: all", evaluate(train, args.seeds, args.size), lambda x: True))

    batch_prompts = [test[i % len(test)] for i in range(args.batch)]
    images = render_batch(batch_prompts, size=args.size, seed=0)
    speed = {
        "reward_images_per_s": throughput(lambda: score_shapes(images, batch_prompts), args.batch, args.repeats),
        "render_images_per_s": throughput(lambda: render_batch(batch_prompts, size=args.size, seed=0),
                                          args.batch, args.repeats),
    }
    return {"rows": rows, "speed": speed}


def to_markdown(result: dict, args) -> str:
    speed = result["speed"]
    head = (f"Shapes reward benchmark: {args.size}×{args.size} images, {args.seeds} render(s) per prompt, "
            f"1 CPU thread (torch.set_num_threads(1)).\n\n"
            f"- reward throughput: **{speed['reward_images_per_s']:.0f} images/s** (batch {args.batch}, "
            f"median of {args.repeats})\n"
            f"- ground-truth render throughput: {speed['render_images_per_s']:.0f} images/s\n\n")
    lines = ["| Prompts | images | GT mean | GT min | mismatched mean | noise mean | smooth-noise mean |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['row']} | {r['images']} | {r['gt_mean']:.3f} | {r['gt_min']:.3f} | "
                     f"{r['mismatched_mean']:.3f} | {r['noise_mean']:.3f} | {r['smooth_noise_mean']:.3f} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seeds", type=int, default=5, help="renders per prompt")
    parser.add_argument("--batch", type=int, default=64, help="images per timed reward call")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for shapes_reward.md and .json")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    result = run(args)
    table = to_markdown(result, args)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shapes_reward.md").write_text(table)
    settings = {k: str(v) for k, v in vars(args).items() if k != "out"}
    (args.out / "shapes_reward.json").write_text(json.dumps({"settings": settings, **result}, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(run_command(main))

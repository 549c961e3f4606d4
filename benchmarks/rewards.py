"""Reward throughput side by side: images per second of each registered reward on tiny configs (CPU),
and our HPS against the reference ``hpsv2`` scorer (``hpsv2x==1.2.0``) on the same tiny model.

The reference reloads its checkpoint on every call and scores one prompt per call; ours loads once
and scores a batch. Target: ours ≥ 10× faster per image at batch 16. Our HPS caches the text
features of prompts it has seen, so it is timed twice: with the cache emptied before every call
(every prompt new: the figure compared with the reference) and with the prompts seen before.

    python -m benchmarks.rewards            # writes benchmarks/results/rewards.{md,json}
    python -m benchmarks.rewards --device cuda --full-size   # adds ViT-H-14 (random weights) in bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mixgrpo.cli import add_debug_flag, run_command
from mixgrpo.rewards.clip_scores import CLIPScore, PickScore
from mixgrpo.rewards.hps import HPS
from mixgrpo.rewards.image_reward import ImageReward
from mixgrpo.rewards.registry import get_reward
from mixgrpo.rewards.tiny import (TINY_IMAGE_REWARD_VISION, TINY_OPEN_CLIP, build_tiny_clip_folder,
                                  build_tiny_image_reward_folder)
from mixgrpo.shapes import render_batch, train_prompts

RESULTS = Path(__file__).parent / "results"
REFERENCE = Path.home() / ".cache" / "mixgrpo-tests" / "hpsv2x-1.2.0"


def reference_scorer(checkpoint: Path):
    """The reference package, installed test-only with --no-deps, its model cache pre-filled."""
    if not (REFERENCE / "hpsv2" / "img_score.py").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(REFERENCE),
                        "hpsv2x==1.2.0", "clint==0.5.1"], check=True)
    sys.path.insert(0, str(REFERENCE))
    import hpsv2.img_score as img_score
    from hpsv2.src.open_clip.model import CLIP
    from hpsv2.src.open_clip.transform import image_transform

    img_score.model_dict["model"] = CLIP(**TINY_OPEN_CLIP, output_dict=True)
    img_score.model_dict["preprocess_val"] = image_transform(224, is_train=False, resize_longest_max=True)
    return lambda image, prompt: img_score.score(image, prompt, cp=str(checkpoint), hps_version="v2.1")


def throughputs(fns: dict, images, prompts, repeats: int) -> dict[str, float]:
    """Images per second of each scorer, median of ``repeats`` calls; the scorers take turns call by
    call, so a change in machine load during the run affects all of them alike."""
    for fn in fns.values():
        fn(images[:2], prompts[:2])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(images, prompts)
            times[name].append(time.perf_counter() - start)
    return {name: len(images) / statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full-size", action="store_true", help="add ViT-H-14 HPS with random weights (GPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    prompts = train_prompts()[: args.batch]
    images = render_batch(prompts, 128, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import open_clip

        checkpoint = tmp / "HPS_v2.1_compressed.pt"
        torch.save({"state_dict": open_clip.model.CLIP(**TINY_OPEN_CLIP).state_dict()}, checkpoint)
        build_tiny_clip_folder(tmp / "clip")
        hps = HPS("v2.1", checkpoint=checkpoint, model_config=TINY_OPEN_CLIP, device=args.device)

        def hps_new_prompts(batch_images, batch_prompts):
            hps.clear_text_cache()
            return hps(batch_images, batch_prompts)

        scorers = {
            "shapes": get_reward("shapes"),
            "hpsv2.1 (tiny), new prompts": hps_new_prompts,
            "hpsv2.1 (tiny), prompts seen before": hps,
            "pickscore (tiny)": PickScore(path=tmp / "clip", device=args.device),
            "clip (tiny)": CLIPScore(path=tmp / "clip", device=args.device),
            "imagereward (tiny)": ImageReward(path=build_tiny_image_reward_folder(tmp / "ImageReward"),
                                              vision_config=TINY_IMAGE_REWARD_VISION, device=args.device),
        }
        reference = reference_scorer(checkpoint)
        pil = [__import__("PIL.Image").Image.fromarray((im.permute(1, 2, 0) * 255).round().byte().numpy())
               for im in images]

        def reference_batch(batch_images, batch_prompts):
            return [reference(pil[i], p) for i, p in enumerate(batch_prompts)]

        scorers["hpsv2.1 (tiny), reference scorer"] = reference_batch
        rows += [{"reward": name, "images_per_s": value}
                 for name, value in throughputs(scorers, images, prompts, args.repeats).items()]
        if args.full_size:
            from mixgrpo.rewards.hps import hps_preprocess

            big = open_clip.create_model("ViT-H-14", pretrained=None).to(args.device, torch.bfloat16).eval()
            tokens = open_clip.get_tokenizer("ViT-H-14")(prompts).to(args.device)

            @torch.no_grad()
            def full(batch_images, batch_prompts):
                pixels = hps_preprocess(batch_images.to(args.device)).to(torch.bfloat16)
                out = (big.encode_image(pixels, normalize=True) * big.encode_text(tokens, normalize=True)).sum(-1)
                if out.is_cuda:
                    torch.cuda.synchronize()
                return out

            rows.append({"reward": "hpsv2.1 ViT-H-14 bf16 (random weights)",
                         "images_per_s": throughputs({"full": full}, images, prompts, args.repeats)["full"]})

    per_s = {r["reward"]: r["images_per_s"] for r in rows}
    speedup = per_s["hpsv2.1 (tiny), new prompts"] / per_s["hpsv2.1 (tiny), reference scorer"]
    table = [f"Reward throughput, batch {args.batch}, 128² images, device {args.device} "
             f"({torch.get_num_threads()} threads), median of {args.repeats}.\n",
             "| Reward | images / s |", "|---|---|"]
    table += [f"| {r['reward']} | {r['images_per_s']:.1f} |" for r in rows]
    table.append(f"\nOur HPS (new prompts) vs the reference scorer on the same tiny model: **{speedup:.1f}×** per image.")
    text = "\n".join(table) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rewards.md").write_text(text)
    (args.out / "rewards.json").write_text(json.dumps({"rows": rows, "hps_speedup": speedup}, indent=2))
    return rows, speedup


if __name__ == "__main__":
    sys.exit(run_command(main))

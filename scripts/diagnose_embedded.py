"""Denoising diagnostics of a shapes-world flow model (:mod:`mixgrpo.shapes.diagnose`): at which noise levels
does it lose the shapes?

    python scripts/diagnose_embedded.py [MODEL_DIR] [--repeats 2]

MODEL_DIR defaults to the embedded model. Prints two markdown tables: the reward of partial
denoising from each start step of the 25-step grid (0 = sampling from noise, 25 = VAE round trip),
and the one-step x̂0 prediction at several σ. About a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixgrpo.cli import add_debug_flag, run_command  # noqa: E402
from mixgrpo.shapes.diagnose import denoising_report, format_report  # noqa: E402
from mixgrpo.models import load_flow_model  # noqa: E402
from mixgrpo.models.embedded import EMBEDDED_DIR, RESOLUTION, SHIFT  # noqa: E402
from mixgrpo.shapes import test_prompts  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=EMBEDDED_DIR)
    parser.add_argument("--repeats", type=int, default=2, help="renders per test prompt")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--shift", type=float, default=SHIFT)
    parser.add_argument("--seed", type=int, default=123)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    model = load_flow_model(args.model, device="cpu")
    prompts = test_prompts() * args.repeats
    report = denoising_report(model, prompts, steps=args.steps, shift=args.shift, resolution=RESOLUTION,
                              seed=args.seed)
    print(f"{args.model}: {len(prompts)} test renders")
    print(format_report(report))


if __name__ == "__main__":
    sys.exit(run_command(main))

"""The embedded model: a tiny FLUX-layout text-to-image model of the shapes world, shipped in the repo.

Its folder is an ordinary diffusers ``FluxPipeline`` (``model_index.json``, ``transformer/``, ``vae/``,
``text_encoder/`` + ``tokenizer/`` (CLIP), ``text_encoder_2/`` + ``tokenizer_2/`` (T5),
``scheduler/``) plus ``mixgrpo.json`` with the settings it was trained for (text length, sampling
shift, resolution) and its evaluation. ``scripts/pretrain_embedded.py`` trains it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .tiny import TinyConfig

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapes-flux-tiny"
SETTINGS_FILE = "mixgrpo.json"


# About 3 M parameters (≈ 12 MB in float32): 128² images → 16×16×16 latents → 64 tokens. Sized so
# that pretraining all of it takes under 45 minutes on a 2-core CPU.
ARCHITECTURE = TinyConfig(hidden=128, heads=4, double_blocks=2, single_blocks=2, text_dim=64, text_layers=2,
                          vae_channels=(16, 32, 64, 64), latent_channels=16, vae_mid_attention=False)
RESOLUTION = 128
MAX_SEQUENCE_LENGTH = 24  # T5 tokens; prompts have at most 12 words
SHIFT = 3.0               # σ-grid shift of training rollouts and evaluation


def read_settings(folder: str | Path) -> dict:
    """The ``mixgrpo.json`` of a model folder, or {} when it has none (e.g. FLUX.1-dev)."""
    path = Path(folder) / SETTINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_settings(folder: str | Path, architecture: TinyConfig = ARCHITECTURE, **extra) -> None:
    data = {"architecture": asdict(architecture), "max_sequence_length": MAX_SEQUENCE_LENGTH,
            "shift": SHIFT, "resolution": RESOLUTION, **extra}
    (Path(folder) / SETTINGS_FILE).write_text(json.dumps(data, indent=2) + "\n")

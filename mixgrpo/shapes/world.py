"""The vocabulary of the shapes world: shapes, palette, positions, relations, counts, categories.

Everything else in :mod:`mixgrpo.shapes` (prompt grammar, renderer, reward) reads these tables, so
changing a colour or adding a position word happens here only.

Palette (sRGB, 0–255). The colours are strongly saturated and pairwise at least 0.42 apart in RGB
distance on the [0, 1] scale (closest pairs: orange–yellow 0.42, red–orange 0.43, blue–purple
0.49), so the reward, which gives each pixel to its nearest palette colour, never mistakes one
flat colour for another, and a colour has to drift about 0.2 before the nearest colour changes:

==========  ===============
red         (220,  30,  30)
green       ( 30, 170,  50)
blue        ( 30,  70, 230)
yellow      (240, 230,  40)
purple      (150,  50, 200)
orange      (250, 130,   0)
==========  ===============

Backgrounds are never palette-like: a grey of value in [0.04, 0.22] (dark) or [0.76, 0.96] (light)
plus a per-channel tint of at most ±0.04, i.e. saturation (max − min channel) ≤ 0.08. Every
background is at least 0.4 (RGB distance) from every palette colour (checked by the tests).
"""

from __future__ import annotations

import torch

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

PALETTE_RGB255: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "yellow": (240, 230, 40),
    "purple": (150, 50, 200),
    "orange": (250, 130, 0),
}
COLOURS: tuple[str, ...] = tuple(PALETTE_RGB255)

#: ``[len(COLOURS), 3]`` float32 palette in [0, 1], rows in the order of :data:`COLOURS`
PALETTE = torch.tensor([PALETTE_RGB255[c] for c in COLOURS], dtype=torch.float32) / 255.0

#: absolute positions and their canonical phrase in a prompt
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}
POSITIONS: tuple[str, ...] = tuple(POSITION_PHRASES)

#: relations between two objects (subject RELATION reference) and their canonical phrase
RELATION_PHRASES: dict[str, str] = {
    "above": "above",
    "below": "below",
    "left_of": "to the left of",
    "right_of": "to the right of",
}
RELATIONS: tuple[str, ...] = tuple(RELATION_PHRASES)

COUNT_WORDS: dict[int, str] = {1: "a", 2: "two", 3: "three"}
MAX_OBJECTS = 3  # instances in one image, all groups together

#: GenEval-like prompt categories (GenEval's "position" is our "relation")
CATEGORIES: tuple[str, ...] = (
    "single_object",       # "a circle"
    "colour",              # "a red circle"
    "counting",            # "three squares", "two red circles"
    "position",            # "a blue square on the left"
    "two_objects",         # "a circle and a triangle"
    "colour_attribution",  # "a red circle and a green square"
    "relation",            # "a yellow triangle above a blue circle"
)

# Background ranges (see the module docstring).
BACKGROUND_DARK = (0.04, 0.22)
BACKGROUND_LIGHT = (0.76, 0.96)
BACKGROUND_TINT = 0.04

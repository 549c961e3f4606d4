"""The embedded "shapes" world: a miniature GenEval with prompts, ground-truth renders and a reward.

- **World** (:mod:`.world`): circles, squares and upright triangles in six well-separated palette
  colours (red, green, blue, yellow, purple, orange) on plain dark or light greyish backgrounds;
  positions left / right / top / bottom / centre; relations above / below / left of / right of;
  1–3 objects per image.
- **Prompts** (:mod:`.prompts`): a :class:`PromptSpec` (one or two :class:`ObjectSpec` groups —
  shape, colour or None, count, position or None — plus an optional relation) has one canonical
  text, and :func:`parse_prompt` reads it back. Seven GenEval-like categories: single_object,
  colour, counting, position, two_objects, colour_attribution, relation.
- **Splits** (:mod:`.splits`): seeded, disjoint :func:`train_prompts` (330) and
  :func:`test_prompts` (69); six colour–shape pairs (:data:`HELD_OUT_PAIRS`) never occur in a
  training prompt, so the test split measures unseen combinations.
- **Renderer** (:mod:`.render`): :func:`render` / :func:`render_batch` draw the ground truth —
  random sizes, non-overlapping positions jittered around anchors that follow the prompt's
  structure, random backgrounds — as ``[3, H, W]`` in [0, 1].
- **Reward** (:mod:`.reward`): :func:`score_shapes` (registered as the ``"shapes"`` reward in :mod:`mixgrpo.rewards.shapes`)
  segment by palette distance, find connected components, classify shapes from their geometry and
  score presence, colour, count, position and relation with partial credit, in [0, 1].
"""

from .prompts import ObjectSpec, PromptSpec, object_text, parse_prompt, prompt_text
from .render import PlacedObject, render, render_batch, sample_layout
from .reward import CRITERIA, score_shapes
from .splits import HELD_OUT_PAIRS, derangement, prompt_universe, test_prompts, train_prompts
from .world import (
    CATEGORIES,
    COLOURS,
    PALETTE,
    PALETTE_RGB255,
    POSITIONS,
    RELATIONS,
    SHAPES,
)

__all__ = [
    "CATEGORIES",
    "COLOURS",
    "CRITERIA",
    "HELD_OUT_PAIRS",
    "PALETTE",
    "PALETTE_RGB255",
    "POSITIONS",
    "RELATIONS",
    "SHAPES",
    "ObjectSpec",
    "PlacedObject",
    "PromptSpec",
    "derangement",
    "object_text",
    "parse_prompt",
    "prompt_text",
    "prompt_universe",
    "render",
    "render_batch",
    "sample_layout",
    "score_shapes",
    "test_prompts",
    "train_prompts",
]

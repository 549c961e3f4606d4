"""Fixed, seeded train and test prompt splits of the shapes world.

Every category has a finite *universe* of canonical prompts (:func:`prompt_universe`):

=====================  ======================================================================  ====
category               universe                                                                size
=====================  ======================================================================  ====
single_object          "a <shape>"                                                                3
colour                 "a <colour> <shape>"                                                      18
counting               "two|three [<colour>] <shape>s"                                           42
position               "a [<colour>] <shape> <position>"                                        105
two_objects            "<n> <shape> and <m> <other shape>", n + m ≤ 3                            18
colour_attribution     "a <colour> <shape> and a <other colour> <shape>"                        270
relation               coloured pairs as above, or two uncoloured different shapes, × 4       1104
=====================  ======================================================================  ====

**Held-out combinations.** The colour–shape pairs in :data:`HELD_OUT_PAIRS` — red triangle, orange
triangle, green circle, yellow circle, blue square, purple square (one per colour, two per shape) —
never appear in a training prompt of any category. Training images of uncoloured prompts ("a
triangle") may still *show* a red triangle; only the text combination is unseen.

**Split rule** (seed :data:`SPLIT_SEED`, Python's ``random.Random``, which is stable across
versions). Per category, the universe is sorted by text, cut into prompts that contain a held-out
pair (``H``) and the rest (``S``), and both are shuffled. The test split takes the first
``test_held`` prompts of ``H`` (unseen combinations) and the first ``test_seen`` of ``S`` (unseen
prompts made of seen pairs); the train split takes the next ``train`` prompts of ``S``. The two
splits are therefore disjoint by construction; the remaining prompts belong to neither.
:data:`SPLIT_SIZES` gives 330 train and 69 test prompts.
"""

from __future__ import annotations

import functools
import itertools
import random

from .prompts import ObjectSpec, PromptSpec, prompt_text
from .world import CATEGORIES, COLOURS, POSITIONS, RELATIONS, SHAPES

SPLIT_SEED = 2507

#: colour–shape pairs that appear in no training prompt (the test split's unseen combinations)
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("red", "triangle"), ("orange", "triangle"),
    ("green", "circle"), ("yellow", "circle"),
    ("blue", "square"), ("purple", "square"),
})

#: per category: (train, test_seen, test_held) prompt counts
SPLIT_SIZES: dict[str, tuple[int, int, int]] = {
    "single_object": (2, 1, 0),
    "colour": (10, 2, 6),
    "counting": (24, 6, 6),
    "position": (60, 6, 8),
    "two_objects": (14, 4, 0),
    "colour_attribution": (100, 7, 8),
    "relation": (120, 7, 8),
}


def has_held_out_pair(spec: PromptSpec) -> bool:
    """True when some object of ``spec`` names a colour–shape pair of :data:`HELD_OUT_PAIRS`."""
    return any((o.colour, o.shape) in HELD_OUT_PAIRS for o in spec.objects)


def _coloured_pairs() -> list[tuple[ObjectSpec, ObjectSpec]]:
    singles = [ObjectSpec(s, c) for c in COLOURS for s in SHAPES]
    return [(a, b) for a, b in itertools.permutations(singles, 2) if a.colour != b.colour]


def _uncoloured_pairs() -> list[tuple[ObjectSpec, ObjectSpec]]:
    return [(ObjectSpec(a), ObjectSpec(b)) for a, b in itertools.permutations(SHAPES, 2)]


def prompt_universe(category: str) -> list[PromptSpec]:
    """Every canonical prompt spec of ``category``, sorted by prompt text."""
    maybe_colours = (None, *COLOURS)
    if category == "single_object":
        specs = [PromptSpec((ObjectSpec(s),)) for s in SHAPES]
    elif category == "colour":
        specs = [PromptSpec((ObjectSpec(s, c),)) for c in COLOURS for s in SHAPES]
    elif category == "counting":
        specs = [PromptSpec((ObjectSpec(s, c, n),)) for n in (2, 3) for c in maybe_colours for s in SHAPES]
    elif category == "position":
        specs = [PromptSpec((ObjectSpec(s, c, 1, p),)) for p in POSITIONS for c in maybe_colours for s in SHAPES]
    elif category == "two_objects":
        specs = [PromptSpec((ObjectSpec(a, None, n), ObjectSpec(b, None, m)))
                 for a, b in itertools.permutations(SHAPES, 2) for n, m in ((1, 1), (2, 1), (1, 2))]
    elif category == "colour_attribution":
        specs = [PromptSpec(pair) for pair in _coloured_pairs()]
    elif category == "relation":
        specs = [PromptSpec(pair, r) for r in RELATIONS for pair in _coloured_pairs() + _uncoloured_pairs()]
    else:
        raise ValueError(f"unknown category {category!r}: expected one of {', '.join(CATEGORIES)}")
    return sorted(specs, key=prompt_text)


@functools.lru_cache(maxsize=1)
def _splits() -> tuple[tuple[str, ...], tuple[str, ...]]:
    rng = random.Random(SPLIT_SEED)
    train, test = [], []
    for category in CATEGORIES:
        n_train, n_seen, n_held = SPLIT_SIZES[category]
        universe = prompt_universe(category)
        held = [s for s in universe if has_held_out_pair(s)]
        seen = [s for s in universe if not has_held_out_pair(s)]
        rng.shuffle(held)
        rng.shuffle(seen)
        test += held[:n_held] + seen[:n_seen]
        train += seen[n_seen:n_seen + n_train]
    return tuple(map(prompt_text, train)), tuple(map(prompt_text, test))


def train_prompts() -> list[str]:
    """The training prompts (330), grouped by category in :data:`~mixgrpo.shapes.world.CATEGORIES` order."""
    return list(_splits()[0])


def test_prompts() -> list[str]:
    """The test prompts (69), none of which is a training prompt; see the module docstring."""
    return list(_splits()[1])


# Tell pytest that this public function is not a test when it is imported into a test module.
test_prompts.__test__ = False


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation without fixed points: pairs each image with another prompt (mismatch checks)."""
    rng = random.Random(seed)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order

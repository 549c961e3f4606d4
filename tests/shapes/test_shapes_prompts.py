"""Shapes world: palette, prompt grammar (text ↔ spec), categories and the train/test splits."""

import itertools

import pytest
import torch

from mixgrpo.errors import PromptError
from mixgrpo.shapes import (
    CATEGORIES,
    COLOURS,
    HELD_OUT_PAIRS,
    PALETTE,
    SHAPES,
    ObjectSpec,
    PromptSpec,
    parse_prompt,
    prompt_text,
    prompt_universe,
    test_prompts,
    train_prompts,
)
from mixgrpo.shapes.splits import SPLIT_SIZES, has_held_out_pair
from mixgrpo.shapes.world import BACKGROUND_DARK, BACKGROUND_LIGHT, BACKGROUND_TINT

pytestmark = pytest.mark.models


def test_palette_colours_are_well_separated():
    assert PALETTE.shape == (6, 3) and len(COLOURS) >= 6 and set(SHAPES) >= {"circle", "square", "triangle"}
    dist = torch.cdist(PALETTE, PALETTE) + torch.eye(len(COLOURS)) * 9
    assert dist.min() > 0.42  # nearest-colour segmentation: a colour must drift > 0.21 to change its label


def test_no_background_is_near_a_palette_colour():
    # every corner of the background box (grey range × tint), the extremes of what render draws
    corners = []
    for lo, hi in (BACKGROUND_DARK, BACKGROUND_LIGHT):
        for grey in (lo, hi):
            for tint in itertools.product((-BACKGROUND_TINT, BACKGROUND_TINT), repeat=3):
                corners.append([min(max(grey + t, 0.0), 1.0) for t in tint])
    dist = torch.cdist(torch.tensor(corners), PALETTE)
    assert dist.min() > 0.4


@pytest.mark.parametrize("text, spec", [
    ("a circle", PromptSpec((ObjectSpec("circle"),))),
    ("a red circle", PromptSpec((ObjectSpec("circle", "red"),))),
    ("three squares", PromptSpec((ObjectSpec("square", None, 3),))),
    ("two red circles", PromptSpec((ObjectSpec("circle", "red", 2),))),
    ("a blue square on the left", PromptSpec((ObjectSpec("square", "blue", 1, "left"),))),
    ("a circle and a triangle", PromptSpec((ObjectSpec("circle"), ObjectSpec("triangle")))),
    ("a red circle and a green square", PromptSpec((ObjectSpec("circle", "red"), ObjectSpec("square", "green")))),
    ("a yellow triangle above a blue circle",
     PromptSpec((ObjectSpec("triangle", "yellow"), ObjectSpec("circle", "blue")), "above")),
    ("an orange square to the right of a circle",
     PromptSpec((ObjectSpec("square", "orange"), ObjectSpec("circle")), "right_of")),
])
def test_parse_canonical_examples(text, spec):
    assert parse_prompt(text) == spec
    assert prompt_text(spec) == text


@pytest.mark.parametrize("text, canonical", [
    ("  A Yellow  Triangle ABOVE a blue circle. ", "a yellow triangle above a blue circle"),
    ("a red square left of a green circle", "a red square to the left of a green circle"),
    ("one purple triangle in the center", "a purple triangle in the centre"),
    ("a triangle in the middle", "a triangle in the centre"),
    ("a orange circle", "an orange circle"),
    ("two circle", "two circles"),
])
def test_parse_accepts_variants_and_writes_canonical_text(text, canonical):
    assert prompt_text(parse_prompt(text)) == canonical


@pytest.mark.parametrize("text, expected_category", [
    ("a circle", "single_object"), ("a red circle", "colour"), ("three squares", "counting"),
    ("two red circles", "counting"), ("a blue square on the left", "position"),
    ("a circle and a triangle", "two_objects"), ("two circles and a square", "two_objects"),
    ("a red circle and a green square", "colour_attribution"),
    ("a yellow triangle above a blue circle", "relation"), ("a square below a circle", "relation"),
])
def test_category_is_read_off_the_structure(text, expected_category):
    assert parse_prompt(text).category == expected_category


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"), ("   ", "empty"), (".", "empty"),
    ("a dog", "unknown words: 'dog'"), ("a red", "expected"), ("four circles", "four"),
    ("a circle and a square and a triangle", "at most 2"),
    ("three circles and a square", "at most 3 objects"),
    ("a circle above", "expected"), ("a pink circle", "pink"),
])
def test_unparseable_prompts_raise_prompt_error_saying_what_was_expected(text, fragment):
    with pytest.raises(PromptError) as info:
        parse_prompt(text)
    assert fragment in str(info.value)
    assert "circle, square, triangle" in str(info.value) or "at most" in str(info.value)


def test_non_string_prompt_and_invalid_spec_raise_prompt_error():
    with pytest.raises(PromptError, match="string"):
        parse_prompt(None)
    with pytest.raises(PromptError, match="unknown shape 'star'"):
        prompt_text(PromptSpec((ObjectSpec("star"),)))
    with pytest.raises(PromptError, match="exactly two"):
        prompt_text(PromptSpec((ObjectSpec("circle"),), "above"))


def test_every_universe_spec_round_trips():
    total = 0
    for category in CATEGORIES:
        specs = prompt_universe(category)
        assert len(set(specs)) == len(specs)
        for spec in specs:
            assert spec.category == category
            assert parse_prompt(prompt_text(spec)) == spec
        total += len(specs)
    assert total == 3 + 18 + 42 + 105 + 18 + 270 + 1104


def test_splits_round_trip_and_are_canonical():
    for text in train_prompts() + test_prompts():
        spec = parse_prompt(text)
        assert prompt_text(spec) == text
        assert parse_prompt(prompt_text(spec)) == spec


def test_splits_are_fixed_disjoint_and_sized():
    train, test = train_prompts(), test_prompts()
    assert train == train_prompts() and test == test_prompts()  # deterministic
    assert len(train) == len(set(train)) == 330
    assert len(test) == len(set(test)) == 69
    assert not set(train) & set(test)
    assert train[:3] == ["a circle", "a triangle", "a red square"]  # seeded order does not drift
    per_category = {c: [parse_prompt(t).category for t in train].count(c) for c in CATEGORIES}
    assert per_category == {c: SPLIT_SIZES[c][0] for c in CATEGORIES}


def test_held_out_pairs_never_appear_in_training_but_do_in_test():
    assert len(HELD_OUT_PAIRS) == 6
    assert {c for c, _ in HELD_OUT_PAIRS} == set(COLOURS)  # one pair per colour
    train_specs = [parse_prompt(t) for t in train_prompts()]
    test_specs = [parse_prompt(t) for t in test_prompts()]
    assert not any(has_held_out_pair(s) for s in train_specs)
    seen_pairs = {(o.colour, o.shape) for s in train_specs for o in s.objects if o.colour}
    test_pairs = {(o.colour, o.shape) for s in test_specs for o in s.objects if o.colour}
    assert test_pairs >= HELD_OUT_PAIRS
    assert not seen_pairs & HELD_OUT_PAIRS
    assert seen_pairs == {(c, s) for c in COLOURS for s in SHAPES} - HELD_OUT_PAIRS
    held_by_category = {s.category for s in test_specs if has_held_out_pair(s)}
    assert held_by_category == {"colour", "counting", "position", "colour_attribution", "relation"}


def test_both_splits_cover_every_category():
    for split in (train_prompts(), test_prompts()):
        assert {parse_prompt(t).category for t in split} == set(CATEGORIES)
    test_specs = [parse_prompt(t) for t in test_prompts()]
    assert {s.relation for s in test_specs} >= {"above", "below", "left_of", "right_of"}
    assert {o.count for s in test_specs for o in s.objects} == {1, 2, 3}
    assert all(1 <= s.num_instances <= 3 for s in test_specs)

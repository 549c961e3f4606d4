"""Shapes renderer: image format, seeding, layout rules (counts, colours, regions, relations, no overlap)."""

import math

import numpy as np
import pytest
import torch

from mixgrpo.errors import PromptError
from mixgrpo.shapes import (
    PALETTE,
    PALETTE_RGB255,
    parse_prompt,
    render,
    render_batch,
    sample_layout,
    test_prompts,
)
from mixgrpo.shapes.render import (
    GAP,
    JITTER,
    RADIUS_RANGE,
    RELATION_MIN_OFFSET,
    anchor_points,
    draw_layout,
    sample_background,
)

pytestmark = pytest.mark.models


def test_render_returns_float_chw_in_unit_range():
    image = render("a red circle", size=96, seed=0)
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_render_is_seeded():
    assert torch.equal(render("two squares", seed=3), render("two squares", seed=3))
    assert not torch.equal(render("two squares", seed=3), render("two squares", seed=4))
    a = render("a circle", generator=torch.Generator().manual_seed(7))
    b = render("a circle", generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_render_batch_matches_single_renders():
    prompts = ["a circle", "a blue square on the left", "a red triangle above a green circle"]
    batch = render_batch(prompts, size=64, seed=10)
    assert batch.shape == (3, 3, 64, 64)
    for i, p in enumerate(prompts):
        assert torch.equal(batch[i], render(p, size=64, seed=10 + i))
    assert render_batch([], size=64).shape == (0, 3, 64, 64)


def test_render_accepts_specs_and_rejects_bad_prompts():
    spec = parse_prompt("three triangles")
    assert torch.equal(render(spec, seed=1), render("three triangles", seed=1))
    with pytest.raises(PromptError):
        render("a dog", seed=0)


def test_background_is_plain_and_far_from_the_palette():
    rng = np.random.default_rng(0)
    backgrounds = torch.tensor([sample_background(rng) for _ in range(500)])
    assert (backgrounds.max(1).values - backgrounds.min(1).values).max() <= 0.08 + 1e-6  # low saturation
    assert torch.cdist(backgrounds, PALETTE).min() > 0.4
    # the image corners are always background (objects keep a margin), and equal to each other
    image = render("three circles", seed=5)
    corners = image[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, corners[:, :1].expand(-1, 4))


def test_object_pixels_have_the_palette_colour_and_the_expected_area():
    size = 128
    rng = np.random.default_rng(2)
    for shape, share in (("circle", math.pi), ("square", 4.0), ("triangle", 2.0)):
        layout = sample_layout(f"a red {shape}", rng)
        image = draw_layout(layout, (0.5, 0.5, 0.5), size)
        red = torch.tensor(PALETTE_RGB255["red"]) / 255
        pixels = ((image - red[:, None, None]).abs().amax(0) < 0.02).sum().item()
        expected = share * (layout[0].radius * size) ** 2  # πr², (2r)², ½·(2r)·(2r)
        assert abs(pixels - expected) < 0.12 * expected, (shape, pixels, expected)


def _layouts(prompts, seeds):
    for p in prompts:
        for seed in seeds:
            yield parse_prompt(p), sample_layout(p, np.random.default_rng(seed))


def test_layouts_follow_the_prompt():
    lo, hi = RADIUS_RANGE
    for spec, layout in _layouts(test_prompts(), range(4)):
        assert len(layout) == spec.num_instances
        for obj_index, obj in enumerate(spec.objects):
            mine = [p for p in layout if p.group == obj_index]
            assert len(mine) == obj.count and all(p.shape == obj.shape for p in mine)
            if obj.colour is not None:
                assert all(p.colour == obj.colour for p in mine)
        for p in layout:
            assert lo * 0.85**3 <= p.radius <= hi
            assert p.radius < p.cx < 1 - p.radius and p.radius < p.cy < 1 - p.radius  # inside the image
        for a, b in ((a, b) for i, a in enumerate(layout) for b in layout[i + 1:]):
            reach = a.radius + b.radius + GAP - 1e-9
            assert abs(a.cx - b.cx) >= reach or abs(a.cy - b.cy) >= reach  # boxes apart


@pytest.mark.parametrize("position, test", [
    ("left", lambda p: p.cx <= 0.3), ("right", lambda p: p.cx >= 0.7), ("top", lambda p: p.cy <= 0.3),
    ("bottom", lambda p: p.cy >= 0.7), ("centre", lambda p: abs(p.cx - 0.5) <= 0.05 and abs(p.cy - 0.5) <= 0.05),
])
def test_positions_land_in_their_region(position, test):
    phrase = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
              "centre": "in the centre"}[position]
    for _, layout in _layouts([f"a triangle {phrase}", f"a blue square {phrase}"], range(20)):
        assert test(layout[0])


@pytest.mark.parametrize("relation, axis, sign", [
    ("above", "cy", -1), ("below", "cy", 1), ("to the left of", "cx", -1), ("to the right of", "cx", 1),
])
def test_relations_hold_with_a_margin(relation, axis, sign):
    for _, layout in _layouts([f"a red circle {relation} a blue square", f"a circle {relation} a triangle"], range(20)):
        subject, reference = layout
        along = sign * (getattr(subject, axis) - getattr(reference, axis))
        other = "cx" if axis == "cy" else "cy"
        assert along >= RELATION_MIN_OFFSET
        assert abs(getattr(subject, other) - getattr(reference, other)) <= along


def test_uncoloured_groups_draw_palette_colours_at_random():
    colours = {p.colour for _, layout in _layouts(["three circles"], range(30)) for p in layout}
    assert len(colours) == len(PALETTE_RGB255)


def test_several_objects_in_the_centre_get_room_and_contradictions_raise():
    for _, layout in _layouts(["two red triangles in the centre", "three circles in the centre"], range(5)):
        assert all(abs(p.cx - 0.5) <= 0.15 and abs(p.cy - 0.5) <= 0.15 for p in layout)
        assert min(p.radius for p in layout) >= RADIUS_RANGE[0] * 0.85**3
    with pytest.raises(PromptError, match="contradict"):
        render("a circle on the left to the right of a square on the right", seed=0)


def test_shape_masks_cover_exactly_the_drawn_shapes_of_each_kind():
    prompts = ["a red circle above a blue square", "two green triangles and a circle", "three yellow squares"]
    plain = render_batch(prompts, 128, seed=3)
    images, masks = render_batch(prompts, 128, seed=3, with_masks=True)
    assert torch.equal(plain, images)  # asking for masks changes no image
    assert masks.shape == (3, 3, 128, 128) and 0 <= masks.min() and masks.max() <= 1
    background = images[:, :, :1, :1]
    painted = (images - background).abs().amax(1) > 0.02  # [B, H, W]
    covered = masks.sum(1) > 0.02
    assert (painted ^ covered).float().mean() < 0.01  # the masks sit where shapes were painted
    kinds = (masks.flatten(2).amax(2) > 0.5).tolist()  # SHAPES order: circle, square, triangle
    assert kinds == [[True, True, False], [True, False, True], [False, True, False]]
    assert masks.sum(1).max() <= 1 + 1e-6  # kinds never overlap: shapes keep a gap


@pytest.mark.parametrize("prompt, expected", [
    ("a circle", [(0.5, 0.5)]),
    ("a red square on the left", [(0.2, 0.5)]),
    ("three triangles", [(0.2, 0.5), (0.5, 0.5), (0.8, 0.5)]),
    ("two circles on the right", [(0.8, 0.35), (0.8, 0.65)]),
    ("a circle and two squares", [(0.3, 0.5), (0.7, 0.35), (0.7, 0.65)]),
    ("a red circle above a blue square", [(0.5, 0.3), (0.5, 0.7)]),
    ("a circle to the right of a triangle", [(0.7, 0.5), (0.3, 0.5)]),
])
def test_anchor_points_follow_the_prompt_structure(prompt, expected):
    assert np.allclose(anchor_points(parse_prompt(prompt)), expected)


def test_layouts_jitter_around_their_anchors():
    """Every test prompt's instances lie within the jitter of their anchors (sizes never shrink), yet
    no two seeds give the same layout."""
    for spec, layout in _layouts(test_prompts(), range(4)):
        for p, (ax, ay) in zip(layout, anchor_points(spec)):
            assert abs(p.cx - ax) <= JITTER + 1e-9 and abs(p.cy - ay) <= JITTER + 1e-9, spec.text
            assert p.radius >= RADIUS_RANGE[0]
    centres = {(round(p.cx, 6), round(p.cy, 6)) for _, layout in _layouts(["a circle"], range(50)) for p in layout}
    assert len(centres) == 50

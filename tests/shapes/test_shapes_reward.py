"""The rule-based shapes reward: honest on ground truth, mismatches and noise; partial credit; input errors."""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mixgrpo.errors import ImageInputError, PromptError
from mixgrpo.shapes import (
    derangement,
    CRITERIA,
    parse_prompt,
    render,
    render_batch,
    score_shapes,
    test_prompts,
)
from mixgrpo.shapes.render import PlacedObject, draw_layout

pytestmark = pytest.mark.models

BACKGROUND = (0.15, 0.15, 0.17)


@pytest.fixture(scope="module")
def test_renders():
    prompts = test_prompts()
    return prompts, render_batch(prompts, size=128, seed=0)


def score(images, prompts) -> torch.Tensor:
    return score_shapes(images, prompts)[0]


def placed(shape, colour, cx, cy, radius=0.12, group=0):
    return PlacedObject(shape, colour, cx, cy, radius, group)


def draw(*objects, size=128):
    return draw_layout(list(objects), BACKGROUND, size)[None]


def test_ground_truth_test_renders_score_high(test_renders):
    prompts, images = test_renders
    scores, details = score_shapes(images, prompts)
    assert scores.shape == (len(prompts),) and scores.dtype == torch.float32
    assert scores.mean() >= 0.95
    assert scores.min() >= 0.8
    for category in {d["category"] for d in details}:
        mine = torch.tensor([d["category"] == category for d in details])
        assert scores[mine].mean() >= 0.95, category


def test_mismatched_prompts_and_noise_score_low(test_renders):
    prompts, images = test_renders
    shuffled = [prompts[j] for j in derangement(len(prompts), seed=0)]
    assert score(images, shuffled).mean() <= 0.3
    noise = torch.rand(len(prompts), 3, 128, 128, generator=torch.Generator().manual_seed(0))
    assert score(noise, prompts).mean() <= 0.3
    assert score(torch.full((4, 3, 128, 128), 0.5), prompts[:4]).max() == 0.0  # plain grey: nothing there


@pytest.mark.parametrize("size", [64, 256])
def test_ground_truth_scores_high_at_other_sizes(size):
    prompts = test_prompts()[::3]
    assert score(render_batch(prompts, size=size, seed=1), prompts).mean() >= 0.95


def test_blurred_ground_truth_keeps_most_credit(test_renders):
    prompts, images = test_renders
    kernel = torch.ones(3, 1, 3, 3) / 9  # a generated image is never pixel-sharp
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    assert score(blurred, prompts).mean() >= 0.9


def test_partial_credit_for_colour_and_shape():
    prompt = ["a red circle"]
    right = score(draw(placed("circle", "red", 0.5, 0.5)), prompt).item()
    wrong_colour = score(draw(placed("circle", "blue", 0.5, 0.5)), prompt).item()
    wrong_shape = score(draw(placed("square", "red", 0.5, 0.5)), prompt).item()
    both_wrong = score(draw(placed("square", "blue", 0.5, 0.5)), prompt).item()
    blank = score(draw(), prompt).item()
    assert right >= 0.95
    assert right > wrong_colour > wrong_shape > both_wrong > blank == 0.0
    assert wrong_colour == pytest.approx(1 / 6, abs=0.02)  # ½·mean(presence 1, colour 0, count 0) + ½·0
    # ½·mean(presence 0, colour ½, count 0) = 1/12, plus a little: a square is a poor circle
    # (likelihood ≈ 0.1), not an impossible one, so the shape evidence is smooth
    assert wrong_shape == pytest.approx(1 / 12, abs=0.06)
    assert both_wrong < 0.03


def test_partial_credit_for_counts():
    prompt = ["three red circles"]
    xs = (0.2, 0.5, 0.8)
    scores = [score(draw(*[placed("circle", "red", x, 0.5) for x in xs[:n]]), prompt).item() for n in range(4)]
    assert scores[0] == 0.0 and scores[3] >= 0.95
    assert scores[0] < scores[1] < scores[2] < scores[3]
    one = ["a red circle"]
    extra = score(draw(placed("circle", "red", 0.3, 0.5), placed("circle", "red", 0.7, 0.5)), one).item()
    assert 0.0 < extra < 0.6  # one too many: count ½ and a cluttered image


def test_position_and_relation_credit():
    left = draw(placed("square", "blue", 0.2, 0.5))
    middle = draw(placed("square", "blue", 0.42, 0.5))
    right = draw(placed("square", "blue", 0.8, 0.5))
    prompt = ["a blue square on the left"]
    assert score(left, prompt) >= 0.95
    assert score(left, prompt) > score(middle, prompt) > score(right, prompt) > 0.0
    above = draw(placed("circle", "red", 0.5, 0.2), placed("square", "blue", 0.5, 0.75, group=1))
    below = draw(placed("circle", "red", 0.5, 0.75), placed("square", "blue", 0.5, 0.2, group=1))
    prompt = ["a red circle above a blue square"]
    s_above, d_above = score_shapes(above, prompt)
    s_below, d_below = score_shapes(below, prompt)
    assert s_above >= 0.95 and d_above[0]["relation"] == pytest.approx(1.0, abs=1e-3)
    assert d_below[0]["relation"] == 0.0 and 0.0 < s_below < 0.5


def test_clutter_takes_credit_away():
    prompt = ["a red circle"]
    clean = draw(placed("circle", "red", 0.3, 0.3, 0.1))
    cluttered = draw(placed("circle", "red", 0.3, 0.3, 0.1), placed("square", "blue", 0.7, 0.7, 0.1),
                     placed("triangle", "green", 0.3, 0.75, 0.1))
    (s_clean, s_cluttered), details = score_shapes(torch.cat([clean, cluttered]), prompt * 2)
    assert details[0]["clean"] == 1.0 and details[1]["clean"] == pytest.approx(0.0, abs=0.02)
    assert s_cluttered < 0.05 and s_clean >= 0.95


def test_details_list_each_criterion_that_applies():
    prompts = ["a circle", "a red circle", "two squares", "a blue square on the left",
               "a red circle above a blue square"]
    images = torch.stack([render(p, seed=0) for p in prompts])
    scores, details = score_shapes(images, prompts)
    applies = [d for d in details]
    assert [[k for k in CRITERIA if d[k] is not None] for d in applies] == [
        ["presence", "count"], ["presence", "colour", "count"], ["presence", "count"],
        ["presence", "colour", "count", "position"], ["presence", "colour", "count", "relation"]]
    for s, d, p in zip(scores, details, prompts):
        assert d["category"] == parse_prompt(p).category and d["score"] == pytest.approx(s.item())
        assert all(0.0 <= d[k] <= 1.0 for k in CRITERIA if d[k] is not None)


def test_scores_do_not_depend_on_the_rest_of_the_batch(test_renders):
    prompts, images = test_renders
    together = score(images[:8], prompts[:8])
    alone = torch.cat([score(images[i:i + 1], prompts[i:i + 1]) for i in range(8)])
    assert torch.equal(together, alone)


def test_the_registered_shapes_reward_is_score_shapes(test_renders):
    from mixgrpo.rewards import get_reward

    prompts, images = test_renders
    reward = get_reward("shapes")
    assert reward.name == "shapes"
    result = reward(images[:5], prompts[:5])
    assert torch.equal(result.scores, score(images[:5], prompts[:5]))
    assert len(result.details) == 5 and result.details[0]["score"] == pytest.approx(result.scores[0].item())


@pytest.mark.parametrize("images, prompts, fragment", [
    (torch.rand(3, 64, 64), ["a circle"], "add a batch dimension"),
    (torch.rand(1, 64, 64, 3), ["a circle"], "channels-last"),
    (torch.rand(1, 4, 64, 64), ["a circle"], "[B, 3, H, W]"),
    (torch.rand(1, 3, 16, 16), ["a circle"], "at least 32"),
    ((torch.rand(1, 3, 64, 64) * 255).byte(), ["a circle"], "dtype torch.uint8"),
    (torch.rand(1, 3, 64, 64) * 2, ["a circle"], "[0, 1]"),
    (torch.rand(1, 3, 64, 64) * 2 - 1, ["a circle"], "(x + 1) / 2"),
    (torch.full((1, 3, 64, 64), float("nan")), ["a circle"], "NaN"),
    (torch.rand(2, 3, 64, 64), ["a circle"], "2 images but 1 prompts"),
    (torch.rand(1, 3, 64, 64), "a circle", "list of 1 prompt strings"),
    (np.random.rand(1, 3, 64, 64), ["a circle"], "torch.Tensor"),
])
def test_bad_images_raise_image_input_error(images, prompts, fragment):
    with pytest.raises(ImageInputError) as info:
        score_shapes(images, prompts)
    assert fragment in str(info.value)


def test_bad_prompts_raise_prompt_error_and_tolerance_is_tiny():
    images = torch.rand(1, 3, 64, 64)
    with pytest.raises(PromptError, match="empty"):
        score_shapes(images, [""])
    with pytest.raises(PromptError, match="expected"):
        score_shapes(images, ["a photo of a cat"])
    nearly = images.clone()
    nearly[0, 0, 0, 0] = 1.0005  # within the tolerance: accepted, as are values a hair below 0
    nearly[0, 0, 0, 1] = -0.0005
    assert score(nearly, ["a circle"]).shape == (1,)
    assert score(torch.zeros(0, 3, 64, 64), []).shape == (0,)


def test_reward_is_fast_on_one_core(test_renders):
    prompts, images = test_renders
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        score(images, prompts)  # warm-up
        best = min(_timed(images, prompts) for _ in range(3))
    finally:
        torch.set_num_threads(threads)
    assert len(prompts) / best >= 100  # the benchmark measures ~900 images/s; this only catches a slow rewrite


def _timed(images, prompts) -> float:
    start = time.perf_counter()
    score(images, prompts)
    return time.perf_counter() - start

"""Window strategies against hand-computed sequences, resume, and errors."""

import pytest

from mixgrpo import ResumeError, ScheduleError, WindowConfig, WindowSchedule

pytestmark = pytest.mark.core


def test_progressive_paper_default():
    ws = WindowSchedule(WindowConfig(num_steps=25, size=4, shift_interval=25))
    lefts = ws.lefts(75)
    # the paper's iterations 1–25 use l = 0, 26–50 use l = 1 (0-based: 0–24, 25–49)
    assert lefts == [0] * 25 + [1] * 25 + [2] * 25
    assert ws.window_for(1) == range(1, 5)


def test_progressive_rolls_back_after_the_cap():
    ws = WindowSchedule(num_steps=8, size=2, shift_interval=2)  # cap = 8 − 1 − 2 = 5
    assert ws.config.cap == 5
    assert ws.lefts(16) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0, 0, 1, 1]


def test_progressive_clamp_and_stride():
    clamp = WindowSchedule(num_steps=8, size=2, shift_interval=1, on_overflow="clamp")
    assert clamp.lefts(9) == [0, 1, 2, 3, 4, 5, 5, 5, 5]
    stride = WindowSchedule(num_steps=8, size=2, shift_interval=1, stride=2)
    assert stride.lefts(7) == [0, 2, 4, 0, 2, 4, 0]  # 6 > cap 5 rolls back


def test_official_cap_cuts_the_last_windows_short():
    ws = WindowSchedule(num_steps=25, size=4, max_start=22, shift_interval=1)
    assert ws.lefts(24)[-2:] == [22, 0]
    assert ws.window_for(21) == range(21, 24)  # steps 21, 22, 23: never 24, the step to σ = 0
    assert ws.window_for(22) == range(22, 24)


def test_frozen():
    ws = WindowSchedule(strategy="frozen", start=3, shift_interval=1)
    assert ws.lefts(30) == [3] * 30


def test_random_is_seeded_identical_across_instances_and_in_range():
    a = WindowSchedule(strategy="random", seed=7).lefts(200)
    b = WindowSchedule(strategy="random", seed=7).lefts(200)
    c = WindowSchedule(strategy="random", seed=8).lefts(200)
    assert a == b and a != c
    assert min(a) == 0 and max(a) == 20  # cap 25 − 1 − 4; 200 draws cover the range
    assert len(set(a)) == 21


def test_linear_decay_intervals_by_hand():
    # τ(l) = max(1, int(10·(1 − l/20) + 1·l/20)) with cap L = 20:
    # τ(0) = 10, τ(1) = int(9.55) = 9, τ(2) = int(9.1) = 9, τ(3) = int(8.65) = 8, τ(19) = int(1.45) = 1
    ws = WindowSchedule(strategy="decay")
    assert [ws.interval(l) for l in (0, 1, 2, 3, 19, 20)] == [10, 9, 9, 8, 1, 1]
    assert ws.lefts(36) == [0] * 10 + [1] * 9 + [2] * 9 + [3] * 8


def test_exp_decay_intervals_by_hand():
    # τ(l) = ceil(25·exp(−0.1·max(0, l − 13))): 25 up to l = 13, then 23, 21, 19
    ws = WindowSchedule(strategy="exp_decay", shift_interval=25)
    assert [ws.interval(l) for l in (0, 13, 14, 15, 16)] == [25, 25, 23, 21, 19]
    lefts = ws.lefts(14 * 25 + 23 + 1)
    assert lefts[13 * 25] == 13 and lefts[14 * 25] == 14 and lefts[14 * 25 + 23] == 15


@pytest.mark.parametrize("strategy", ["progressive", "random", "decay", "exp_decay", "frozen"])
def test_resume_continues_the_same_sequence(strategy):
    cfg = WindowConfig(strategy=strategy, shift_interval=3, seed=11, start=2 if strategy == "frozen" else 0)
    expected = WindowSchedule(cfg).lefts(60)
    first = WindowSchedule(cfg)
    seen = []
    for _ in range(37):
        seen.append(first.left)
        first.advance()
    resumed = WindowSchedule(cfg)
    resumed.load_state_dict(first.state_dict())
    for _ in range(23):
        seen.append(resumed.left)
        resumed.advance()
    assert seen == expected


def test_resume_with_other_settings_is_refused():
    state = WindowSchedule(shift_interval=25).state_dict()
    with pytest.raises(ResumeError, match="shift_interval"):
        WindowSchedule(shift_interval=20).load_state_dict(state)


def test_window_larger_than_the_schedule_is_a_clear_error():
    with pytest.raises(ScheduleError, match="window size 25 does not fit a 25-step schedule"):
        WindowSchedule(num_steps=25, size=25)
    with pytest.raises(ScheduleError, match="unknown window strategy"):
        WindowSchedule(strategy="sideways")

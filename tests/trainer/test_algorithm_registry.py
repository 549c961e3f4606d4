"""A new algorithm or window strategy is one registry entry: it reaches the plan builder, the CLI and a run."""

import pytest

from conftest import run_metrics, small_run
from mixgrpo import (ALGORITHMS, STRATEGIES, Algorithm, WindowSchedule, WindowStrategy, build_plan,
                     register_algorithm, register_strategy)
from trainer.config import build_parser, parse_config
from trainer.run import main

pytestmark = pytest.mark.trainer
TOY = Algorithm("toy", "Toy-GRPO", eta=0.5, solver="dpm2m", compression=0.5, window_strategy="random")


@pytest.fixture
def toy():
    register_algorithm(TOY)
    yield TOY
    del ALGORITHMS[TOY.name]


def test_a_registered_algorithm_reaches_plans_cli_and_a_run(toy, tmp_path, capsys):
    plan = build_plan("toy", num_steps=8, shift=3.0, window_start=1, window_size=2)
    assert (plan.eta, plan.solver, plan.info["compression"]) == (0.5, "dpm2m", 0.5)
    assert plan.num_steps < 8  # the compressed tail
    assert "toy" in build_parser().format_help() and "toy 0.5" in build_parser().format_help()
    assert parse_config(["--algo", "toy"]).algo == "toy"

    (tmp_path / "eval.txt").write_text("a red circle\n")
    main(small_run(tmp_path, algo="toy", iterations=3, eval_prompts=tmp_path / "eval.txt"))
    rows = run_metrics(tmp_path / "runs" / "run")
    # the algorithm's own window strategy, whatever --window-strategy says (progressive by default)
    expected = WindowSchedule(num_steps=8, size=2, strategy="random", seed=0).lefts(3)
    assert [r["window_start"] for r in rows] == expected
    assert "Toy-GRPO" in capsys.readouterr().err  # the progress bar's name


def test_an_unknown_algorithm_in_a_yaml_config_is_refused(tmp_path):
    from trainer.config import ConfigError

    (tmp_path / "c.yaml").write_text("algo: nosuch\n")
    with pytest.raises(ConfigError, match="algo must be one of 'mixgrpo', 'flash', 'flash_star', 'dancegrpo'"):
        parse_config(["--config", str(tmp_path / "c.yaml")])


@pytest.fixture
def toy_strategy():
    strategy = register_strategy(WindowStrategy("every_third", interval=lambda config, left: 3))
    yield strategy
    del STRATEGIES[strategy.name]


def test_a_registered_window_strategy_reaches_the_cli_and_a_run(toy_strategy, tmp_path):
    assert "every_third" in build_parser().format_help()
    (tmp_path / "eval.txt").write_text("a red circle\n")
    main(small_run(tmp_path, window_strategy="every_third", iterations=4, eval_prompts=tmp_path / "eval.txt"))
    assert [r["window_start"] for r in run_metrics(tmp_path / "runs" / "run")] == [0, 0, 0, 1]

"""Bad input to a command is one line, ``error: <message>``, and exit status 2; ``--debug`` keeps the traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from mixgrpo.cli import run_command
from trainer import eval as trainer_eval
from trainer.config import build_parser
from trainer.run import main

pytestmark = pytest.mark.trainer
REPO = Path(__file__).resolve().parents[2]


def _fails(capsys, argv, command=main) -> str:
    """Run a command through its error boundary; the one line it printed."""
    status = run_command(command, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert err[-1].startswith("error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("argv, expected", [
    (["--window", "30"], "window size 30 does not fit a 25-step schedule"),
    (["--reward", "nosuch"], "unknown reward 'nosuch'; available:"),
    (["--learning-rate", "-1"], "learning_rate must lie in (0, 1], got -1.0"),
    (["--clip-range", "0"], "clip_range must lie in (0, 1)"),
    (["--eta", "nan"], "eta must lie in (0, 10], got nan"),
    (["--compression", "1.5"], "compression must lie in (0, 1]"),
    (["--lora-rank", "0"], "lora_rank must lie in [1, ∞)"),
    (["--reward", "http"], "the http reward needs the url of its judge: --reward-option http.url="),
    (["--reward-option", "http.url=http://127.0.0.1:9/score"], "are for reward 'http', which the reward list"),
    (["--reward", "shapes,http", "--reward-option", "http.adress=x"], "reward 'http' has no option 'adress'"),
    (["--reward-option", "url"], "must read reward.option=value"),
    (["--model-option", "guidanse=3"], "FLUX.1 takes no model option 'guidanse'; its options: guidance, "
                                       "max_sequence_length, negative_prompt"),
    (["--model-option", "guidance"], "model option 'guidance' must read option=value"),
    (["--group-size", "1"], "group_size must be ≥ 2"),
    (["--iterations", "0"], "iterations must lie in [1, ∞), got 0"),
    (["--resolution", "100"], "FLUX.1 needs a height and width divisible by 16 (VAE down-sampling × patch size); "
                              "got 100×100. Try 96×96."),
])
def test_bad_option_values_are_one_line(capsys, tmp_path, argv, expected):
    line = _fails(capsys, argv + ["--run-dir", str(tmp_path)])
    assert expected in line
    assert not any(tmp_path.iterdir()), "nothing is written before the config is valid"


def test_bad_files_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no weights anywhere
    monkeypatch.delenv("MIXGRPO_REWARD_DIR", raising=False)
    runs = ["--run-dir", str(tmp_path / "runs")]
    line = _fails(capsys, ["--reward", "hpsv2.1"] + runs)
    assert "'HPS_v2.1_compressed.pt' not found. Looked in:" in line and "MIXGRPO_HPS_V2_1" in line
    assert "does not exist" in _fails(capsys, ["--model", str(tmp_path / "missing")] + runs)
    (tmp_path / "empty.txt").write_text("\n\n")
    assert "holds no prompt" in _fails(capsys, ["--prompts", str(tmp_path / "empty.txt")] + runs)
    assert "prompts file" in _fails(capsys, ["--prompts", str(tmp_path / "nowhere.txt")] + runs)
    (tmp_path / "not-a-run").mkdir()
    assert "no config.yaml there" in _fails(capsys, ["--resume", str(tmp_path / "not-a-run")])
    (tmp_path / "typo.yaml").write_text("windw: 4\n")
    assert "unknown config key(s) ['windw']" in _fails(capsys, ["--config", str(tmp_path / "typo.yaml")])
    (tmp_path / "broken.yaml").write_text("window: [4\n")
    assert "while parsing" in _fails(capsys, ["--config", str(tmp_path / "broken.yaml")])
    assert "No such file" in _fails(capsys, ["--config", str(tmp_path / "none.yaml")])
    assert "holds no config.yaml" in _fails(capsys, [str(tmp_path / "not-a-run")], trainer_eval.main)


def test_help_states_each_valid_range():
    text = " ".join(build_parser().format_help().split())
    assert "AdamW learning rate (paper, FLUX: 1e-5) [valid: (0, 1]]" in text
    assert "--debug" in text


def test_the_real_command_exits_2_and_debug_shows_the_traceback(tmp_path):
    argv = [sys.executable, "-m", "trainer.run", "--window", "30", "--run-dir", str(tmp_path)]
    plain = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        "error: window size 30 does not fit a 25-step schedule: it must be between 1 and 24 (the last step, to "
        "σ = 0, is never trained). Lower --window or raise --steps."]
    debug = subprocess.run(argv + ["--debug"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ScheduleError" in debug.stderr


@pytest.mark.parametrize("argv, expected", [
    (["scripts/pretrain_embedded.py", "--finetune-from", "/missing/model"],
     "error: --finetune-from /missing/model: no mixgrpo.json with an architecture there"),
    (["-m", "trainer.eval", "/missing/run"], "error: /missing/run holds no config.yaml"),
])
def test_other_commands_share_the_boundary(tmp_path, argv, expected):
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().startswith(expected), done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1

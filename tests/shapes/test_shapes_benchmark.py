"""The shapes reward benchmark runs from the repository root and writes its table and figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mixgrpo.shapes import CATEGORIES

pytestmark = pytest.mark.models

REPO = Path(__file__).resolve().parents[2]


def test_shapes_reward_benchmark_writes_results(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks.shapes_reward", "--seeds", "1", "--batch", "8",
                    "--repeats", "1", "--size", "64", "--out", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True)
    result = json.loads((tmp_path / "shapes_reward.json").read_text())
    rows = {r["row"]: r for r in result["rows"]}
    assert set(rows) == {f"test: {c}" for c in CATEGORIES} | {"test: all", "train: all"}
    assert rows["test: all"]["images"] == 69 and rows["train: all"]["images"] == 330
    assert rows["test: all"]["gt_mean"] >= 0.95
    assert rows["test: all"]["mismatched_mean"] <= 0.3 and rows["test: all"]["noise_mean"] <= 0.3
    assert result["speed"]["reward_images_per_s"] > 0
    table = (tmp_path / "shapes_reward.md").read_text()
    assert "| test: relation |" in table and "images/s" in table

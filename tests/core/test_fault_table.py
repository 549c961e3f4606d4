"""docs/faults.md stays true: each row's test exists and asserts the text the row quotes."""

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.core
REPO = Path(__file__).resolve().parents[2]
FAULT_TESTS = ["tests/trainer/test_cli_faults.py", "tests/trainer/test_signals.py", "tests/trainer/test_http_judge.py",
               "tests/trainer/test_damaged_checkpoints.py", "tests/comfyui/test_reward_folders.py"]
# tests that inject a fault but also check other behaviour: each fault test of theirs is named in a row
FAULT_TESTS_AMONG_OTHERS = {"tests/trainer/test_one_gpu_options.py": ("test_a_gpu_out_of_memory", "test_a_cuda_error",
                                                                     "test_compile_where_it_cannot_work")}


def _rows() -> list[tuple[str, str, list[str]]]:
    rows = []
    for line in (REPO / "docs" / "faults.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 3 and cells[2].startswith("`tests/"):
            rows.append((cells[0], cells[1], re.findall(r"`(tests/[^`]+)`", cells[2])))
    return rows


def _test_names(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_row_names_tests_that_exist_and_quote_what_they_assert():
    rows = _rows()
    assert len(rows) >= 30
    for fault, seen, refs in rows:
        sources = ""
        for ref in refs:
            path, _, name = ref.partition("::")
            assert name in _test_names(path), f"{fault}: {ref} does not exist"
            sources += (REPO / path).read_text()
        for quoted in re.findall(r"`([^`]+)`", seen):
            if (REPO / quoted).exists():  # a path of the repository
                continue
            for piece in re.split(r"<[^>]+>|\bN\b", quoted):  # <run>, N: placeholders
                piece = piece.strip()
                assert len(piece) < 4 or piece in sources, f"{fault}: {piece!r} is not what {refs} check"


def test_every_fault_a_test_injects_has_its_row():
    referenced = {ref for _, _, refs in _rows() for ref in refs}
    for path in FAULT_TESTS:
        for name in _test_names(path):
            assert f"{path}::{name}" in referenced, f"docs/faults.md has no row for {path}::{name}"
    for path, prefixes in FAULT_TESTS_AMONG_OTHERS.items():
        for name in _test_names(path):
            if name.startswith(prefixes):
                assert f"{path}::{name}" in referenced, f"docs/faults.md has no row for {path}::{name}"

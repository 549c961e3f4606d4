"""The layout keeps the architecture visible: import arrows ``nodes/ → mixgrpo/ ← trainer/``, no file over 400 lines.

Imports are read from the source (``ast``), relative ones resolved, so a lazy import inside a
function counts as much as one at the top.
"""

import ast
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400

# package → top-level names it must never import
FORBIDDEN = {
    "mixgrpo": {"trainer", "nodes", "benchmarks", "comfy", "comfy_api", "folder_paths"},
    "nodes": {"trainer", "benchmarks"},
    "trainer": {"nodes", "benchmarks", "comfy", "comfy_api", "folder_paths"},
}
# the algorithm's maths stands alone: no model, reward or shapes world, no diffusers
PURE = {"mixgrpo.algorithm": {"mixgrpo.models", "mixgrpo.rewards", "mixgrpo.shapes", "diffusers", "transformers"}}


def python_files(folder: str = "") -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / f for f in listed if f.startswith(folder) and (ROOT / f).is_file()]


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports, relative imports resolved against its package under ``root``."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return found


def test_import_arrows_point_into_the_core():
    wrong = []
    for package, forbidden in FORBIDDEN.items():
        for path in python_files(package + "/"):
            for module in imported_modules(path):
                if module.split(".")[0] in forbidden:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_algorithm_package_needs_no_model_or_reward():
    wrong = []
    for package, forbidden in PURE.items():
        for path in python_files(package.replace(".", "/") + "/"):
            for module in imported_modules(path):
                if any(module == f or module.startswith(f + ".") for f in forbidden):
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_import_reader_sees_lazy_and_relative_imports(tmp_path):
    """The check above can fail: a lazy relative import of the trainer from the core is found."""
    probe = tmp_path / "mixgrpo" / "algorithm" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import torch\n\ndef f():\n    from ...trainer import loop\n    from ..models import tiny\n")
    assert imported_modules(probe, tmp_path) == {"torch", "trainer", "mixgrpo.models"}


def test_no_python_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in python_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these files (≤ {MAX_LINES} lines each): {long}"

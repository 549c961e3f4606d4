"""The README's core-API example runs as written and its assertions hold."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.core


def test_readme_core_example_runs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README must show the core API with a Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})

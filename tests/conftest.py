"""Shared pytest setup: every test module declares its tier with a ``pytestmark`` marker."""

import os

import pytest
import torch

# Tier-1 results must not depend on how many threads the machine offers.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory):
    """A tiny random FLUX pipeline folder (diffusers layout), written once per session, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mixgrpo.models.tiny import build_tiny_flux

    path = tmp_path_factory.mktemp("tiny_flux")
    build_tiny_flux(path)
    return path

"""Shared pytest setup: every test module declares its tier with a ``pytestmark`` marker."""

import torch

# Tier-1 results must not depend on how many threads the machine offers.
torch.set_num_threads(min(2, torch.get_num_threads()))

"""Model adapters: one interface over the embedded model, diffusers FLUX and SD3 (imports diffusers lazily)."""

from .base import FlowModelAdapter
from .loader import load_flow_model

__all__ = ["FlowModelAdapter", "load_flow_model"]

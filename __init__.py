"""ComfyUI entry point of the MixGRPO node pack: registers the nodes of ``nodes/`` (V3 ``comfy_entrypoint``)."""

import importlib.util
import os
import sys

# ComfyUI always imports this file as a package, with its own ``comfy_api`` importable. pytest also
# imports it, as a bare module when the checkout's folder name is not an identifier (CI clones into
# such folders) or as a package without ComfyUI: then there is nothing to register.
if __package__ and importlib.util.find_spec("comfy_api") is not None:
    if importlib.util.find_spec("mixgrpo") is None:  # cloned into custom_nodes, not pip-installed
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from .nodes import comfy_entrypoint  # noqa: F401

__all__ = ["comfy_entrypoint"] if "comfy_entrypoint" in globals() else []

"""ComfyUI entry point of the MixGRPO node pack: registers the nodes of ``nodes/`` and nothing else.

The node classes arrive with the node-pack issue; until then the pack registers no node.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

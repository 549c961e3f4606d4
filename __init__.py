"""ComfyUI entry point of the MixGRPO node pack: registers the nodes of ``nodes/`` and nothing else.

The node classes arrive with the node-pack issue; until then the pack registers no node.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

# ComfyUI always imports this file as a package. pytest also imports it, as a bare module when the
# checkout's folder name is not an identifier (CI clones into such folders): there is no package to
# import nodes/ relative to, and nothing to register.
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

"""ComfyUI nodes of the pack. Never importable as a top-level ``nodes`` (ComfyUI owns that name):
the root ``__init__.py`` imports this package relatively.

No node is registered yet: the sampler, visualiser, scorer and loaders come with the node-pack issue.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

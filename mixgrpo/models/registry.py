"""The model seam: each adapter registers under the diffusers pipeline classes it drives.

A folder's ``model_index.json`` names its pipeline class; :func:`adapter_class` turns that name into
the adapter, or into one error that lists every supported class. Adding a model is one module with
one ``@register_adapter("SomePipeline")`` class (plus its tests); the loader, the trainer, the
exports and the ComfyUI loader ask the adapter, never the model's name.
"""

from __future__ import annotations

import importlib

from ..errors import ModelLoadError

#: the modules whose import registers the built-in adapters (imported on first use: diffusers is heavy)
BUILT_IN = ("mixgrpo.models.flux", "mixgrpo.models.sd3", "mixgrpo.models.zimage", "mixgrpo.models.qwenimage",
            "mixgrpo.models.flux2")

_ADAPTERS: dict[str, type] = {}


def register_adapter(*pipeline_classes: str):
    """Class decorator: ``cls`` drives the diffusers pipelines named ``pipeline_classes``."""
    def wrap(cls):
        for name in pipeline_classes:
            _ADAPTERS[name] = cls
        cls.pipeline_classes = tuple(pipeline_classes)
        return cls
    return wrap


def adapters() -> dict[str, type]:
    """Every supported pipeline class and its adapter."""
    for module in BUILT_IN:
        importlib.import_module(module)
    return dict(_ADAPTERS)


def adapter_class(pipeline_class: str | None, where: str = "this folder") -> type:
    """The adapter of ``pipeline_class``, or a :class:`ModelLoadError` listing the supported ones."""
    known = adapters()
    if pipeline_class not in known:
        listed = ", ".join(f"{name} ({cls.family})" for name, cls in known.items())
        raise ModelLoadError(f"{where} holds a {pipeline_class!r}, which is not a supported flow model. "
                             f"Supported pipeline classes: {listed}.")
    return known[pipeline_class]

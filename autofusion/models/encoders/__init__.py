"""Encoders, one module per modality or family; importing this package fills the registries.

Every module in this folder is imported (those named ``_*`` are helpers): a new encoder's
module needs no line here, only its ``@register_encoder`` class. The pretrained families
(``hf``, ``timm_image``) import transformers and timm only when a model is built."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

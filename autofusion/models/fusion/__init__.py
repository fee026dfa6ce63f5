"""Fusion operators, one module per operator family; importing this package fills FUSIONS.

Every module in this folder is imported (those named ``_*`` are helpers): a new operator's
module needs no line here, only its ``@register_fusion`` class."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

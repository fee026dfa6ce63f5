"""One lazy-import helper, after Optuna's ``_LazyImport``.

A command module names the library modules it calls at its top, as
``driver = LazyImport("autofusion.search.driver")``; the module is imported on first
attribute access. So ``autofusion spaces list`` and the store check stay fast without
imports scattered inside functions, and the import graph (tests/unit/test_architecture.py)
still sees every dependency.

It is the package's only dynamic import; tests/reliability/test_security.py checks that
every use names an autofusion module as a constant.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyImport(types.ModuleType):
    """A stand-in for module ``name`` that imports it when an attribute is first read.

    Unlike Optuna's helper it copies nothing: every read goes to the real module in
    ``sys.modules``, so a test that monkeypatches the module is seen through the stand-in.
    """

    def __init__(self, name: str) -> None:
        if not name.startswith("autofusion."):  # heavy libraries are imported inside the functions that use them
            raise ValueError(f"LazyImport takes one of autofusion's own modules, but got {name!r}")
        super().__init__(name)
        self._name = name

    def __getattr__(self, item: str) -> Any:
        return getattr(importlib.import_module(self._name), item)

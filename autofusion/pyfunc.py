"""Compatibility only: models logged before the ``serving`` package hold a pickled
``autofusion.pyfunc.FusionPyfunc`` (MLflow pickles the class by its module path); this
alias keeps them loadable. New code imports :mod:`autofusion.serving.pyfunc`."""

from __future__ import annotations

from autofusion.serving.pyfunc import FusionPyfunc

__all__ = ["FusionPyfunc"]

"""The MLflow Model Registry: promote a search's best model (``promotion``), find searches
and list registered models (``catalog``)."""

from __future__ import annotations

from autofusion.modelregistry.catalog import find_search, list_models
from autofusion.modelregistry.promotion import Promotion, promote

__all__ = ["Promotion", "find_search", "list_models", "promote"]

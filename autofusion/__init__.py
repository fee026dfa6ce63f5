"""autofusion: search multimodal fusion architectures with Ray Tune, Optuna and MLflow."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# Quiet, offline-friendly defaults; a user's explicit setting wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DO_NOT_TRACK", "true")

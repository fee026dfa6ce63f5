"""Shared fixtures: one local Ray for the whole session, MLflow stores in temp dirs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with two CPUs, started once per test session."""
    import logging

    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def sqlite_uri(tmp_path):
    """A fresh embedded MLflow store (sqlite + artifacts) under tmp_path."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test runs in its own folder with its own autofusion home, and never sees the
    user's MLFLOW_TRACKING_URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOFUSION_HOME", str(tmp_path / ".autofusion"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

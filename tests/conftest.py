"""Shared fixtures: one local Ray for the whole session, MLflow stores in temp dirs (each a
copy of one store migrated once per session: creating a store runs MLflow's migrations, about
a second each time on two cores; copying one takes milliseconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import new_store

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


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty, migrated MLflow sqlite database file."""
    from autofusion import tracking

    db = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    tracking.check_store(f"sqlite:///{db}")
    return db


@pytest.fixture
def sqlite_uri(tmp_path, store_template):
    """A fresh, empty embedded MLflow store (sqlite + artifacts) under tmp_path/mlruns."""
    return new_store(tmp_path / "mlruns", store_template)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test runs in its own folder with its own autofusion home, and never sees the
    user's MLFLOW_TRACKING_URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOFUSION_HOME", str(tmp_path / ".autofusion"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

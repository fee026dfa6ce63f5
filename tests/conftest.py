"""Shared fixtures: one local Ray per test process, MLflow stores in temp dirs (each a copy of
one store migrated once per session: creating a store runs MLflow's migrations, about a second
each time on two cores; copying one takes milliseconds).

The suite runs in two processes (pytest-xdist, ``-n auto --dist loadfile`` in pyproject.toml):
most of a real search's wall time is waiting (Ray and servers starting, subprocesses
importing torch, polling), which the other process fills. ``loadfile`` keeps each test module
in one process, so a module's shared search is made once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import new_store

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: two test processes where there are two cores or more (each has its own
    two-CPU Ray), one on a single core."""
    return max(1, min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with two CPUs, started once per test process. It starts from the
    repository's root whichever test asks first (the catalogue asks from inside a test, after
    ``_isolated`` moved it to its own folder): Ray workers put the driver's working folder on
    their import path, and the benchmark smoke runs send functions of ``benchmarks/`` to them."""
    import logging

    import ray

    if not ray.is_initialized():
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(ROOT)
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


@pytest.fixture(autouse=True, scope="session")
def _no_auto_bagging_nor_trees():
    """Searches bag their model, and add the gradient-boosted trees member, only when a test
    asks (``bagging=K`` / ``--bagging K``, ``trees=True`` / ``--trees``): the product's defaults
    (``auto`` bags every small data set: 5 folds of up to 3 configurations; trees on) would
    multiply the cost of every test search and change every count of its trials;
    ``tests/integration/test_trees_search.py`` runs a search that does both. Searches run as
    a subprocess (the installed entry point) keep the product's defaults."""
    with pytest.MonkeyPatch.context() as mp:  # session-wide: module-scoped search fixtures too
        mp.setattr("autofusion.search.bagging.AUTO_ROWS", 0)
        mp.setattr("autofusion.search.settings.TREES", False)
        # a logged model's served latency: its minimum (5 one-row requests, one batch) rather than
        # half a second per measurement, two per model; tests/unit/test_latency.py measures it
        mp.setattr("autofusion.serving.latency.BUDGET_S", 0.0)
        yield


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test runs in its own folder with its own autofusion home, and never sees the
    user's MLFLOW_TRACKING_URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOFUSION_HOME", str(tmp_path / ".autofusion"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

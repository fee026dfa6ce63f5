"""Shared pieces of the reliability catalogue: an initialised MLflow sqlite store and a demo
dataset made once per session and copied into each test's folder (creating a store runs
MLflow's migrations, ~4 s on two cores; copying one takes milliseconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autofusion.data.demo import write_demo


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty, migrated MLflow sqlite database file."""
    from autofusion import tracking

    db = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    tracking.client(f"sqlite:///{db}").search_experiments(max_results=1)
    return db


@pytest.fixture
def store(tmp_path, store_template) -> tuple[str, Path]:
    """``(uri, db)``: a ready store at ``tmp_path/mlruns/mlflow.db``."""
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(store_template, db)
    return f"sqlite:///{db}", db


@pytest.fixture(scope="session")
def demo_templates(tmp_path_factory) -> dict[str, Path]:
    """Tiny demo datasets, written once: image_text (24 rows) and audio_video (12 rows)."""
    root = tmp_path_factory.mktemp("demo-templates")
    return {
        "image_text": write_demo("image_text", root / "image_text", num_samples=24).parent,
        "audio_video": write_demo("audio_video", root / "audio_video", num_samples=12).parent,
    }


@pytest.fixture(scope="session")
def search_demo_template(tmp_path_factory) -> Path:
    """The demo the search writes for ``--demo-samples 48`` (its home's ``demo/`` folder)."""
    from autofusion.data.demo import demo_manifest

    home = tmp_path_factory.mktemp("home-template")
    demo_manifest("image_text", home, num_samples=48)
    return home / "demo"

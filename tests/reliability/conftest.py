"""Shared pieces of the reliability catalogue: an initialised MLflow sqlite store (a copy of
the session's ``store_template``, tests/conftest.py) and a demo dataset made once per session
and copied into each test's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from autofusion.data.demo import write_demo
from tests.helpers import new_store


@pytest.fixture
def store(tmp_path, store_template) -> tuple[str, Path]:
    """``(uri, db)``: a ready store at ``tmp_path/mlruns/mlflow.db``."""
    uri = new_store(tmp_path / "mlruns", store_template)
    return uri, tmp_path / "mlruns" / "mlflow.db"


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

"""A real search on data no built-in task fits: four photos per row, tabular fields with
missing values, and a price. No --task and no --space: the space is assembled from the
manifest's columns, the experiment and the registered model are named after the data, the
regression is scored with MAE, RMSE and R2, and the registered model predicts from raw rows
with a missing number and a category it never saw."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from autofusion import modelregistry, tracking
from autofusion.cli import cli
from tests.helpers import new_store

pytestmark = pytest.mark.slow

ROOMS = ("frontal", "bedroom", "bathroom", "kitchen")


def _houses(root: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        for room in ROOMS:
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / "images" / f"{i}_{room}.png")
        area = float(rng.uniform(80, 300))
        rows.append({**{room: f"images/{i}_{room}.png" for room in ROOMS},
                     "bedrooms": int(rng.integers(1, 6)), "area": None if i % 9 == 4 else round(area, 1),
                     "style": ["ranch", "colonial", "modern", ""][i % 4],
                     "price": round(2000.0 * area + float(rng.normal(0, 30000)), 2)})
    path = root / "houses_mini.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_local, store_template):
    root = tmp_path_factory.mktemp("houses")
    manifest = _houses(root)
    uri = new_store(root / "mlruns", store_template)
    result = CliRunner().invoke(cli, ["search", "--data", str(manifest), "--columns", "label=price",
                                      "--num-trials", "2", "--max-epochs", "2", "--concurrency", "2",
                                      "--tracking-uri", uri, "--quiet"])
    assert result.exit_code == 0, result.output
    return uri, root, manifest


def test_the_search_is_named_after_the_data_and_scores_the_regression(searched):
    uri, root, _ = searched
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("houses_mini")
    assert exp is not None
    parent = tracking.latest_search_run(uri, "houses_mini")
    assert parent.data.tags["autofusion.target"] == "regression"
    assert {"test_rmse", "test_mae", "test_r2"} <= set(parent.data.metrics)
    space = Path(c.download_artifacts(parent.info.run_id, "space.yaml", str(root))).read_text()
    assert "A search space assembled from the data" in space and "tabular:" in space
    children = tracking.find_child_runs(uri, exp.experiment_id, parent.info.run_id)
    assert len(children) == 2
    for ch in children:
        assert ch.data.params["encoder.image"] and ch.data.params["encoder.tabular"] in ("mlp", "ft_transformer")
        assert {"val_rmse", "val_mae", "val_r2"} <= set(ch.data.metrics)


def test_the_registered_model_predicts_raw_rows(searched):
    uri, root, manifest = searched
    p = modelregistry.promote(uri, task="houses_mini")
    assert p.name == "houses_mini"
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/houses_mini@champion")
    rows = pd.read_csv(manifest).head(3).drop(columns="price")
    for room in ROOMS:
        rows[room] = [str(root / p) for p in rows[room]]
    rows.loc[0, "area"], rows.loc[1, "style"] = np.nan, "never-seen"
    pred = model.predict(rows)
    assert list(pred.columns) == ["prediction"] and len(pred) == 3
    assert np.isfinite(pred["prediction"]).all() and pred["prediction"].abs().min() > 1000  # in dollars

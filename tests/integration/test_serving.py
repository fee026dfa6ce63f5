"""The promoted model behind ``mlflow models serve``: raw inputs over REST (base64 bytes,
``data:`` URIs, file paths) give the same predictions as the model loaded in-process."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from autofusion import modelregistry
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from tests import procs
from tests.helpers import new_store

pytestmark = pytest.mark.slow

ROWS = 4


@pytest.fixture(scope="module")
def served(tmp_path_factory, ray_local, store_template):
    """A tiny search, promoted to champion, served by ``mlflow models serve`` on a free port."""
    root = tmp_path_factory.mktemp("serving")
    uri = new_store(root / "mlruns", store_template)
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # a new experiment's artifacts go under the working folder's ./mlruns
        run_search(SearchOptions(task="image_text", num_trials=1, max_epochs=1, seed=0, demo_samples=64,
                                 tracking_uri=uri, home=str(home), quiet=True))
    p = modelregistry.promote(uri, task="image_text")
    assert p.moved and p.version == "1"
    demo = home / "demo" / "image_text-64-0"
    manifest = pd.read_csv(demo / "manifest.csv")
    port = procs.free_port()
    log = root / "serve.log"
    proc = procs.start(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/image_text@champion", "--env-manager",
         "local", "--host", "127.0.0.1", "--port", str(port)],
        log, env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": _path_with_venv()}, cwd=root,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        procs.wait_http(url + "/ping", proc, log, timeout=180)
        yield {"url": url, "uri": uri, "demo": demo, "manifest": manifest, "log": log}
    finally:
        procs.stop(proc)


def _path_with_venv() -> str:
    """MLflow's scoring server runs ``uvicorn`` by name: the venv's bin must be on PATH, as in an
    activated venv (the tests may run as ``.venv/bin/python -m pytest`` without activating it)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _invoke(served, images: list[str]) -> pd.DataFrame:
    texts = served["manifest"]["text"].head(len(images)).tolist()
    body = {"dataframe_split": {"columns": ["image", "text"], "data": [[i, t] for i, t in zip(images, texts)]}}
    r = requests.post(served["url"] + "/invocations", json=body, timeout=60)
    assert r.status_code == 200, f"{r.status_code}: {r.text[:1000]}\n{procs.tail(served['log'], 2000)}"
    preds = r.json()["predictions"]
    assert isinstance(preds, list) and len(preds) == len(images)
    return pd.DataFrame(preds)


def _paths(served) -> list[str]:
    return [str(served["demo"] / f) for f in served["manifest"]["image"].head(ROWS)]


def _b64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode("ascii")


def _check(served, pred: pd.DataFrame) -> np.ndarray:
    classes = sorted(served["manifest"]["label"].unique())
    assert list(pred.columns) == ["label", *[f"prob_{c}" for c in classes]]
    assert set(pred["label"]) <= set(classes)
    probs = pred[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert list(pred["label"]) == [classes[i] for i in probs.argmax(axis=1)]
    return probs


def test_base64_png_cells(served):
    cells = [_b64(p) for p in _paths(served)]
    assert all(p.endswith(".png") for p in _paths(served))
    probs = _check(served, _invoke(served, cells))
    # the server preprocesses exactly like the model loaded in-process
    mlflow.set_tracking_uri(served["uri"])
    local = mlflow.pyfunc.load_model("models:/image_text@champion")
    texts = served["manifest"]["text"].head(ROWS).tolist()
    expected = local.predict(pd.DataFrame({"image": cells, "text": texts}))
    assert np.allclose(probs, expected[[c for c in expected.columns if c.startswith("prob_")]].to_numpy(), atol=1e-5)


def test_data_uri_and_file_path_cells_agree_with_base64(served):
    paths = _paths(served)
    by_b64 = _check(served, _invoke(served, [_b64(p) for p in paths]))
    by_uri = _check(served, _invoke(served, [f"data:image/png;base64,{_b64(p)}" for p in paths]))
    by_path = _check(served, _invoke(served, paths))
    assert np.allclose(by_uri, by_b64, atol=1e-6) and np.allclose(by_path, by_b64, atol=1e-6)


def test_photo_sized_base64_cells(served, tmp_path):
    """A base64 cell longer than PATH_MAX (any real photo) is bytes, not a path to stat()."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i, src in enumerate(_paths(served)[:2]):
        big = np.asarray(Image.open(src).convert("RGB").resize((160, 160)), dtype=np.int16)
        noisy = np.clip(big + rng.integers(-8, 9, big.shape), 0, 255).astype(np.uint8)  # incompressible
        paths.append(str(tmp_path / f"photo{i}.png"))
        Image.fromarray(noisy).save(paths[-1])
    cells = [_b64(p) for p in paths]
    assert min(len(c) for c in cells) > 8192
    by_b64 = _check(served, _invoke(served, cells))
    assert np.allclose(by_b64, _check(served, _invoke(served, paths)), atol=1e-6)


def test_unreadable_cells_are_client_errors_naming_the_cell(served):
    missing = str(served["demo"] / "missing.png")
    for cell, message in ((missing, "missing.png"), ("data:image/png;base64,@@not-base64@@", "valid base64"),
                          ("#" * 5000, "nor valid base64")):
        r = requests.post(served["url"] + "/invocations", timeout=60, json={
            "dataframe_split": {"columns": ["image", "text"], "data": [[cell, "a small cat"]]}})
        assert r.status_code == 400, r.text[:500]
        assert "row 1: image:" in r.text and message in r.text, r.text[-500:]

"""The raw-input MLflow model without a search: a model built for a tiny demo dataset is logged
to a sqlite store in tmp_path, loaded back with ``mlflow.pyfunc.load_model`` and asked to
predict from file paths and from base64 bytes."""

from __future__ import annotations

import base64
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from autofusion import tracking
from autofusion.data.demo import write_demo
from autofusion.data.prepare import prepare_data
from autofusion.models.build import build_model
from autofusion.spaces import load_space
from autofusion.trial import TrialConfig
from tests.helpers import flat_config, log_in_new_run


@pytest.fixture(scope="module")
def logged(tmp_path_factory, store_template):
    """(model URI, manifest): an untrained image+text model logged in a trial's run."""
    root = tmp_path_factory.mktemp("pyfunc")
    manifest = write_demo("image_text", root / "demo", num_samples=24)
    data = prepare_data(manifest, load_space("image_text"), seed=0, home=root / "home")
    flat = flat_config(["image", "text"], {"image": "small_cnn", "text": "embedding_bag"}, "mid",
                       **{"encoder.image.small_cnn.width": 8, "encoder.text.embedding_bag.dim": 8})
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    model_uri, uri = log_in_new_run(root, build_model(tc, data.meta).eval(), tc, data, store_template)
    return model_uri, uri, manifest, data.meta.classes


def test_the_logged_model_predicts_raw_inputs(logged):
    model_uri, uri, manifest, classes = logged
    tracking.client(uri)  # the global URIs: models:/ resolves through them
    model = mlflow.pyfunc.load_model(model_uri)
    assert model.metadata.get_input_schema().input_names() == ["image", "text"]
    rows = pd.read_csv(manifest).head(3)
    paths = pd.DataFrame({"image": [str(manifest.parent / p) for p in rows["image"]], "text": rows["text"]})
    pred = model.predict(paths)
    probs = pred[[f"prob_{c}" for c in classes]].to_numpy()
    assert len(pred) == 3 and set(pred["label"]) <= set(classes)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    encoded = paths.assign(image=[base64.b64encode(Path(p).read_bytes()).decode("ascii") for p in paths["image"]])
    pd.testing.assert_frame_equal(model.predict(encoded), pred)  # bytes over REST == a path on disk


def test_a_bad_cell_is_named_in_one_line(logged):
    model_uri, uri, _, _ = logged
    tracking.client(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    with pytest.raises(Exception, match=r"row 1: image"):  # which row, which column
        model.predict(pd.DataFrame({"image": ["missing.png"], "text": ["a small cat"]}))

"""Missing modalities at prediction time, through the real logged model: a space that allows
image and text to be missing, a model trained with modality dropout (zero-filling or learned
missing embeddings), logged with ``log_fusion_model`` to a sqlite store in tmp_path, loaded
with ``mlflow.pyfunc.load_model``, asked to predict rows with an empty image or text cell."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from autofusion import tracking
from autofusion.data.demo import write_demo
from autofusion.data.prepare import prepare_data
from autofusion.data.splits import TEST
from autofusion.models.build import build_model
from autofusion.serving.inputs import model_inputs
from autofusion.spaces import load_space
from autofusion.train.loop import fit
from autofusion.trial import TrialConfig
from tests.helpers import flat_config, log_in_new_run


@pytest.fixture(scope="module", params=["zero", "learned"])
def logged(request, tmp_path_factory, store_template):
    """(model URI, store URI, request rows, the trained model, data) for one ``train.missing``."""
    root = tmp_path_factory.mktemp(f"missing-{request.param}")
    manifest = write_demo("image_text", root / "demo", num_samples=48)
    df = pd.read_csv(manifest)
    df.loc[:5, "text"] = ""  # some training rows lack their text
    df.to_csv(manifest, index=False)
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump({"extends": "image_text", "task": "image_text",
                                     "data": {"allow_missing": ["image", "text"]}}))
    data = prepare_data(manifest, load_space(space=space), seed=0, home=root / "home")
    flat = flat_config(["image", "text"], {"image": "small_cnn", "text": "embedding_bag"}, "mid",
                       **{"encoder.image.small_cnn.width": 8, "encoder.text.embedding_bag.dim": 8,
                          "train.epochs": 2, "train.modality_dropout": 0.5, "train.missing": request.param})
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    torch.manual_seed(0)
    model = build_model(tc, data.meta)
    fit(model, data, tc, device=torch.device("cpu"))
    model.eval()
    rows = df.iloc[data.indices(TEST)[:4]]
    request_rows = pd.DataFrame({"image": [str(manifest.parent / p) for p in rows["image"]],
                                 "text": list(rows["text"])})
    request_rows.loc[0, "text"] = ""  # no text
    request_rows.loc[1, "image"] = ""  # no image
    request_rows.loc[2, "text"] = None  # no text, as JSON's null
    model_uri, uri = log_in_new_run(root, model, tc, data, store_template)
    return model_uri, uri, request_rows, model, data


def test_the_logged_model_predicts_rows_with_a_missing_modality(logged):
    model_uri, uri, request_rows, trained, data = logged
    tracking.client(uri)
    served = mlflow.pyfunc.load_model(model_uri)
    pred = served.predict(request_rows)
    classes = data.meta.classes
    probs = pred[[f"prob_{c}" for c in classes]].to_numpy()
    assert len(pred) == 4 and set(pred["label"]) <= set(classes)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    inputs, present = model_inputs(request_rows, data.meta, trained.feature_keys, data.extractors)
    assert present["text"].tolist() == [False, True, False, True] and present["image"].tolist()[1] is False
    with torch.no_grad():  # the served model is the trained one, missing embeddings included
        expected = torch.softmax(trained(inputs, present), dim=-1).numpy()
    assert np.allclose(probs, expected, atol=1e-5)


def test_learned_missing_embeddings_are_what_serving_uses(logged):
    _, _, request_rows, trained, data = logged
    if trained.missing is None:  # zero-filling: nothing learned, nothing in the weights
        assert not [k for k in trained.state_dict() if k.startswith("missing.")]
        return
    vectors = trained.missing.vectors
    assert vectors["text"].abs().sum() > 0 and vectors["image"].abs().sum() > 0  # trained, from zero
    inputs, present = model_inputs(request_rows, data.meta, trained.feature_keys, data.extractors)
    with torch.no_grad():
        learned = trained(inputs, present)
        kept, trained.missing = trained.missing, None  # the same weights, masking instead
        try:
            masked = trained(inputs, present)
        finally:
            trained.missing = kept
    lacking = ~(present["text"] & present["image"])
    assert not torch.allclose(learned[lacking], masked[lacking], atol=1e-4)
    assert torch.allclose(learned[~lacking], masked[~lacking], atol=1e-5)  # complete rows: unchanged

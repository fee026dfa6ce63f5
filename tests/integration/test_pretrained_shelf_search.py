"""Weights registered with ``autofusion weights add`` (a tiny BERT folder and timm's test_vit
state dict, made here) under their hub and timm names, then one real search (Ray Tune, Optuna,
MLflow) whose space names them by those names only and pairs each with a classical encoder on
the same input (``tfidf+hf_text``, ``pixels+timm``): the pairs train, are logged, and the
logged model predicts raw inputs."""

from __future__ import annotations

import os

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from autofusion import tracking
from autofusion.cli import cli
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from autofusion.serving.inputs import model_inputs
from autofusion.spaces.load import SPACES_DIR
from tests.helpers import new_store
from tests.tiny_models import tiny_bert, tiny_timm

pytestmark = pytest.mark.slow
os.environ["HF_HUB_OFFLINE"] = "1"
PAIRS = {"encoder.text": "tfidf+hf_text", "encoder.image": "pixels+timm"}


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_local, store_template):
    root = tmp_path_factory.mktemp("shelf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOFUSION_WEIGHTS", str(root / "shelf"))
        mp.setenv("HF_HUB_CACHE", str(root / "hf"))
        for name, path in (("tiny/bert", tiny_bert(root / "bert")), ("timm:test_vit", tiny_timm(root / "vit.pth"))):
            out = CliRunner().invoke(cli, ["weights", "add", name, str(path)])
            assert out.exit_code == 0, out.output
        raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
        raw["encoders"] = {
            "text": {"choices": {"tfidf": {"dim": 16}, "hf_text": {"model": "tiny/bert", "max_tokens": 8},
                                 "tfidf+hf_text": {}}},
            "image": {"choices": {"pixels": {"dim": 16}, "timm": {"model": "test_vit", "max_tokens": 4},
                                  "pixels+timm": {}}}}
        raw["fusion"] = {"choices": {"mid": {"dim": 16}, "attention": {"dim": 16, "heads": 2}}}
        space = root / "space.yaml"
        space.write_text(yaml.safe_dump(raw))
        uri = new_store(root / "mlruns", store_template)
        opts = SearchOptions(space=str(space), num_trials=2, max_epochs=2, concurrency=2, seed=0, tracking_uri=uri,
                             home=str(root / "home"), demo_samples=48, quiet=True, scheduler="fifo", trees=False,
                             enqueue=({**PAIRS, "fusion.type": "attention"}, {**PAIRS, "fusion.type": "mid"}))
        yield run_search(opts), uri, root


def test_the_search_finds_the_added_weights_by_their_names(searched):
    result, uri, _ = searched
    params = tracking.client(uri).get_run(result.parent_run_id).data.params
    found = {v.split("@")[0] for k, v in params.items() if k.startswith("pretrained.") and k.endswith(".weights")}
    assert found == {"tiny/bert", "test_vit"}


def test_two_encoders_on_one_input_train_log_and_serve_raw_inputs(searched):
    result, uri, root = searched
    c = tracking.client(uri)
    assert len(result.trials) == 2 and all(t.status == "finished" and t.best_value is not None for t in result.trials)
    for t in result.trials:
        assert {k: c.get_run(t.run_id).data.params[k] for k in PAIRS} == PAIRS
    manifest = next((root / "home" / "demo").rglob("manifest.csv"))
    rows = pd.read_csv(manifest).head(3)
    frame = pd.DataFrame({"image": [str(manifest.parent / p) for p in rows["image"]], "text": rows["text"]})
    model = mlflow.pyfunc.load_model(result.model_uri)
    predicted = model.predict(frame)
    assert len(predicted) == 3 and predicted.filter(like="prob_").sum(axis=1).round(4).eq(1).all()
    served = model.unwrap_python_model()  # the pretrained half's backbone run once per request, as served ...
    inputs, present = model_inputs(frame, served.meta, served.model.feature_keys, served.extractors)
    with torch.no_grad():  # ... gives what the whole model gives on its model inputs
        direct = torch.softmax(served.model(inputs, present).float(), dim=-1).numpy()
    np.testing.assert_allclose(served.outputs(frame), direct, atol=1e-5)

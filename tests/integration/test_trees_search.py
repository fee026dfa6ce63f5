"""A real search whose gradient-boosted trees member wins, then bags: on fields where the label
is a step in one number crossed with a brand, one epoch of a neural trial is far behind
LightGBM. The trees member (and the linear one after it) is a child run like any trial, is the search's best trial (tested
once, its pyfunc logged and serving raw rows) and a member of the logged ensemble; bagging (3
folds) refits the chosen configurations on the training and validation rows, weighs them on
out-of-fold outputs, and its model is the search's: tested once, logged, registered. The space
also offers a frozen tiny BERT: the row members read its embeddings of the text."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from autofusion import tracking
from autofusion.models.linear import LINEAR
from autofusion.models.trees import KIND, ROW_MODELS
from autofusion.search import ensemble
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from tests.helpers import new_store
from tests.tiny_models import tiny_bert
from tests.unit.test_trees import _shop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_local, store_template):
    root = tmp_path_factory.mktemp("trees-search")
    manifest = _shop(root, n=300)
    uri = new_store(root / "mlruns", store_template)
    from autofusion.spaces.auto import write_auto_space

    space = write_auto_space(manifest, home=root / "home")
    raw = yaml.safe_load(space.path.read_text())  # a frozen pretrained text encoder too: the row members read its embeddings
    raw["encoders"]["text"]["choices"]["hf_text"] = {"model": str(tiny_bert(root / "bert")), "max_tokens": 8}
    space.path.write_text(yaml.safe_dump(raw, sort_keys=False))
    opts = SearchOptions(space=str(space.path), data=str(manifest), num_trials=2, max_epochs=1, concurrency=2,
                         tracking_uri=uri, home=str(root / "home"), quiet=True, sampler="random", bagging="3", trees=True)
    with pytest.MonkeyPatch.context() as mp:  # keep the ensemble whatever it scores: its member is under test
        mp.setattr(ensemble.EnsembleChoice, "kept", property(lambda self: True))
        return run_search(opts), uri, manifest


@pytest.mark.parametrize("kind, folder, params", [(KIND, "trees", {"lightgbm.num_leaves", "lightgbm.learning_rate"}),
                                                   (LINEAR, "linear", {"linear.C"})])
def test_each_row_member_is_a_trial_of_the_search(searched, kind, folder, params):
    """The trees member, then the linear ones (every input, then the text alone and the
    fields alone): each a finished child run with its parameters, its validation metric and
    its tuning table, after the two neural trials."""
    result, uri, _ = searched
    assert [t.kind for t in result.trials] == ["fusion", "fusion", KIND, LINEAR, LINEAR, LINEAR]
    assert [t.config.get("linear.inputs") for t in result.trials[3:]] == ["all", "text", "tabular"]
    (t,) = [t for t in result.trials if t.kind == kind and t.config.get("linear.inputs", "all") == "all"]
    run = tracking.client(uri).get_run(t.run_id)
    assert run.data.tags["autofusion.model_kind"] == kind and run.info.status == "FINISHED"
    assert params | {"fusion.type"} <= set(run.data.params) and run.data.params["fusion.type"] == kind
    assert run.data.metrics["val_f1_macro"] == pytest.approx(t.best_value)
    tried = json.loads(open(mlflow.artifacts.download_artifacts(run_id=t.run_id, artifact_path=f"{folder}/tuning.json",
                                                                 tracking_uri=uri)).read())
    assert len(tried) >= 1 and max(r["val_f1_macro"] for r in tried) == pytest.approx(t.best_value)


def test_the_row_members_read_the_pretrained_embeddings(searched):
    result, uri, _ = searched
    reading = [t for t in result.trials if t.kind in ROW_MODELS and t.config.get(f"{t.kind}.inputs", "all") in ("all", "text")]
    assert {t.config.get("linear.inputs") for t in reading} >= {"all", "text"}
    for t in reading:  # LightGBM may have picked the fields alone
        assert t.config[f"{t.kind}.embedding.text"].startswith("hf_text-"), t.config
        summary = tracking.client(uri).get_run(t.run_id).data.tags["autofusion.summary"]
        assert summary.endswith("(+ hf_text embeddings)"), summary


def test_the_trees_member_wins_and_serves_raw_rows(searched):
    result, uri, manifest = searched
    assert result.best.kind == KIND  # one epoch of a neural trial is far behind
    assert result.test_metrics["test_accuracy"] > 0.8
    mlflow.set_tracking_uri(uri)
    rows = pd.read_csv(manifest).tail(40)
    request = rows.drop(columns=["label"]).rename(columns={"review": "text"})  # a single text input is "text"
    for model_uri in (result.model_uri, result.ensemble.model_uri, result.bagged.model_uri):
        pred = mlflow.pyfunc.load_model(model_uri).predict(request)
        assert (pred["label"] == rows["label"].to_numpy()).mean() > 0.8, model_uri
        assert np.allclose(pred[["prob_cheap", "prob_dear"]].sum(axis=1), 1.0, atol=1e-5)


def test_the_ensemble_holds_the_trees_member(searched):
    result, _, _ = searched
    e = result.ensemble
    assert e.kept and result.best.number in e.trials  # greedy selection's first pick is the best trial
    loaded = mlflow.pyfunc.load_model(e.model_uri).unwrap_python_model()
    kinds = [type(m).__name__ for m in loaded.members]
    assert "TreePyfunc" in kinds


def test_the_bagged_model_is_the_searchs_and_serves_raw_rows(searched):
    result, uri, manifest = searched
    g = result.bagged
    assert g is not None and g.folds == 3 and g.rows == result.data_summary["train"] + result.data_summary["val"]
    assert result.final_model_uri == g.model_uri and abs(sum(g.weights) - 1.0) < 1e-9
    rows = {t.number for t in result.trials if t.kind in ROW_MODELS}  # bagged whatever the ensemble picked
    assert set(g.trials) <= set(result.ensemble.trials) | rows and result.best.number in g.trials
    assert "val_f1_macro" in g.oof_metrics and g.test_metrics["test_accuracy"] > 0.8
    parent = tracking.client(uri).get_run(result.parent_run_id)
    assert parent.data.tags["autofusion.model_uri"] == g.model_uri
    assert parent.data.metrics["test_accuracy"] == pytest.approx(g.test_metrics["test_accuracy"])
    assert parent.data.metrics["oof_val_f1_macro"] == pytest.approx(g.oof_metrics["val_f1_macro"])
    loaded = mlflow.pyfunc.load_model(g.model_uri).unwrap_python_model()
    assert len(loaded.members) == 3 * len(g.trials)  # every configuration's fold models
    from autofusion import modelregistry

    p = modelregistry.promote(uri, search=result.parent_run_id)
    assert p.value == pytest.approx(g.test_metrics[p.metric])


def test_a_row_member_that_cannot_be_fitted_is_left_out_with_a_line(tmp_path, ray_local, store_template, monkeypatch):
    """LightGBM failing on the data (injected: its tuning raises) leaves the trees member out
    with one line saying so; the linear members, tuned beside it, and the search go on."""
    from rich.console import Console

    from autofusion.train import trees as train_trees

    def broken(*args, **kwargs):
        raise RuntimeError("LightGBM cannot split on these rows")

    monkeypatch.setattr(train_trees, "tune_trees", broken)
    from autofusion.spaces.auto import write_auto_space

    manifest = _shop(tmp_path, n=120)
    space = write_auto_space(manifest, home=tmp_path / "home")
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        result = run_search(SearchOptions(space=str(space.path), data=str(manifest), num_trials=1, max_epochs=1, concurrency=1,
                                          tracking_uri=new_store(tmp_path / "mlruns", store_template),
                                          home=str(tmp_path / "home"), sampler="random", bagging="0", trees=True),
                            console=Console(file=f, width=400))
    assert [t.kind for t in result.trials] == ["fusion", LINEAR, LINEAR, LINEAR]
    said = out.read_text()
    assert "The lightgbm member over all inputs could not be fitted on" in said, said
    assert "(RuntimeError: LightGBM cannot split on these rows); the search goes on without it" in said, said
    assert result.best is not None

"""The gradient-boosted trees member: its feature rows (tabular fields as they are, missing
numbers as NaN, TF-IDF reduced by an SVD fitted on the training rows), tuning on the search's
validation metric, and the pyfunc that serves it on raw rows exactly as it was evaluated."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autofusion.data.prepare import prepare_data
from autofusion.data.splits import TEST, TRAIN
from autofusion.models.linear import LINEAR
from autofusion.models.trees import MAX_COLUMNS, Block, TreeModel
from autofusion.search.features import build_features
from autofusion.search.records import PERMUTATION, REMOVAL
from autofusion.serving.perturb import Perturbation
from autofusion.serving.pyfunc import ArtifactContext
from autofusion.serving.trees import TreePyfunc, save_tree_files
from autofusion.spaces.auto import write_auto_space
from autofusion.train.trees import (
    LINEAR_C,
    TreeData,
    block_columns,
    linear_inputs,
    tree_blocks,
    tune_linear,
    tune_trees,
)


def _shop(root, n: int = 240):
    """Products: a price band decided by a step in ``weight`` and the brand, a review whose
    words carry nothing, some weights missing."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        weight = float(rng.uniform(0, 10))
        brand = ["acme", "zeta", "omni"][i % 3]
        label = int((weight > 5) != (brand == "zeta"))
        rows.append({"weight": None if i % 17 == 0 else round(weight, 2), "brand": brand,
                     "review": f"bought it on day {i} and it arrived in a box number {rng.integers(1000)}",
                     "label": ["cheap", "dear"][label]})
    path = root / "shop.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    manifest = _shop(root)
    space = write_auto_space(manifest, home=root / "home")
    data = prepare_data(manifest, space, home=root / "home")
    build_features(data, space)
    return manifest, data


def test_the_blocks_are_the_fields_and_each_texts_features(shop):
    _, data = shop
    blocks = tree_blocks(data)
    assert [(b.input, b.key is None) for b in blocks] == [("text", False), ("tabular", True)]  # one text column: its input is "text"
    tab = next(b for b in blocks if b.key is None)
    assert (tab.numeric, tab.categories) == (1, 1)
    td = TreeData.of(data)
    assert td.features.blocks[0].width == MAX_COLUMNS  # the TF-IDF, reduced on the training rows
    assert td.x_train.shape == (len(data.indices(TRAIN)), MAX_COLUMNS + 2)
    weight = td.x_train[:, MAX_COLUMNS]
    assert np.isnan(weight).sum() == data.raw["tabular"]["weight"].iloc[data.indices(TRAIN)].isna().sum() > 0
    assert td.features.categorical() == [MAX_COLUMNS + 1]  # the brand's ids


def test_a_tabular_block_reads_missing_numbers_as_nan():
    b = Block("tabular", None, numeric=2, categories=1)
    x = np.array([[0.5, 0.0, 0.0, 1.0, 3.0]], dtype=np.float32)  # z1, z2, missing1, missing2, category id
    assert np.array_equal(b.columns(x), np.array([[0.5, np.nan, 3.0]], dtype=np.float32), equal_nan=True)


def test_tuning_ranks_configurations_on_the_search_metric(shop):
    _, data = shop
    res = tune_trees(data, "val_f1_macro", "max", configs=3, seconds=60)
    assert len(res.tried) == 3 and res.best is not None
    assert res.best.val_metrics["val_f1_macro"] == max(t["val_f1_macro"] for t in res.tried)
    assert res.best.val_metrics["val_accuracy"] > 0.8  # a step in weight and a brand (chance: 0.5)
    assert res.best.val_outputs.shape == (len(data.indices(1)), 2)
    assert np.allclose(res.best.val_outputs.sum(axis=1), 1.0, atol=1e-5)


def test_the_linear_layout_is_unreduced_one_hot_and_scaled(shop):
    """The linear member's row: the whole TF-IDF, the weight (0 where missing) beside its
    missing indicator, one column per brand id, each block at a mean row norm of one."""
    _, data = shop
    td = TreeData.of(data, linear=True)
    text, tab = td.features.blocks
    tfidf = data.features[f"text|{text.key}"]["x"].shape[1]
    assert hasattr(td.x_train, "tocsr") and text.width == tfidf > MAX_COLUMNS
    assert td.features.widths == {"tabular": [5]} and tab.width == 1 + 1 + 5  # ids 0 missing, 1 unknown, 3 brands
    x = td.x_train.toarray()
    for start, b in ((0, text), (text.width, tab)):
        assert np.linalg.norm(x[:, start:start + b.width], axis=1).mean() == pytest.approx(1.0, rel=1e-4)
    missing = data.raw["tabular"]["weight"].iloc[data.indices(TRAIN)].isna().to_numpy()
    assert missing.any() and np.array_equal(x[:, tfidf + 1] > 0, missing) and (x[missing, tfidf] == 0).all()
    assert (np.count_nonzero(x[:, tfidf + 2:], axis=1) == 1).all()  # one brand each
    assert td.features.categorical() == []


def test_the_linear_member_is_tuned_on_the_search_metric(shop):
    _, data = shop
    assert linear_inputs(data) == ["all", "text", "tabular"]  # every input, then each modality alone
    alone = tune_linear(data, "val_f1_macro", "max", inputs="tabular").best
    assert [b.input for b in alone.model.features.blocks] == ["tabular"] and alone.params["inputs"] == "tabular"
    assert tune_linear(data, "val_f1_macro", "max", inputs="image").best is None  # no image here
    res = tune_linear(data, "val_f1_macro", "max")
    assert [t["C"] for t in res.tried] == list(LINEAR_C) and res.best.model.kind == LINEAR
    assert res.best.val_metrics["val_f1_macro"] == max(t["val_f1_macro"] for t in res.tried)
    assert np.allclose(res.best.val_outputs.sum(axis=1), 1.0, atol=1e-5)
    hurried = tune_linear(data, "val_f1_macro", "max", seconds=0.0)  # a budget spent: the first fit only
    assert [t["C"] for t in hurried.tried] == [LINEAR_C[0]] and hurried.best is not None


@pytest.mark.parametrize("tune", [lambda d: tune_trees(d, "val_f1_macro", "max", configs=1, seconds=60),
                                  lambda d: tune_linear(d, "val_f1_macro", "max")], ids=["lightgbm", "linear"])
def test_a_saved_member_serves_raw_rows_as_it_was_evaluated(shop, tmp_path, tune):
    manifest, data = shop
    fit = tune(data).best
    test = data.indices(TEST)
    expected = torch.softmax(torch.from_numpy(
        fit.model.outputs(block_columns(data, fit.model.features.blocks, test))), dim=-1).numpy()
    (tmp_path / "meta.json").write_text(json.dumps(data.meta.to_json()))
    ctx = ArtifactContext({"meta": str(tmp_path / "meta.json"), **save_tree_files(tmp_path, fit.model, data)})
    loaded = TreeModel.load(tmp_path / "trees")
    assert loaded.keys == fit.model.keys and loaded.kind == fit.model.kind
    py = TreePyfunc()
    py.load_context(ctx)
    rows = pd.read_csv(manifest).iloc[data.row_ids[test] - 1].drop(columns=["label"])
    pred = py.predict(ctx, rows)
    assert np.allclose(pred[["prob_cheap", "prob_dear"]].to_numpy(), expected, atol=1e-6)
    assert (pred["label"] == np.array(data.meta.classes)[expected.argmax(axis=1)]).all()
    # importance passes through one request cache: each what the member gives on the changed rows
    cache: dict = {}
    rows = rows.reset_index(drop=True)
    np.testing.assert_allclose(py.outputs(rows, cache), py.outputs(rows), atol=1e-9)
    order = np.random.default_rng(0).permutation(len(rows))
    for p in (Perturbation("review", ("review",), PERMUTATION, order), Perturbation("weight", ("weight",), REMOVAL),
              Perturbation("review", ("review",), REMOVAL)):
        np.testing.assert_allclose(py.outputs(rows, cache, p), py.outputs(p.frame(rows)), atol=1e-9)
    np.testing.assert_allclose(py.outputs(rows, cache), py.outputs(rows), atol=1e-9)  # the intact rows, unchanged


def test_the_linear_member_fits_a_regression_as_ridge(tmp_path):
    """A price that is a line in the weight plus a brand's offset: ridge over the linear
    layout finds it (R2 near 1 on validation), and its outputs are the predictions."""
    rng = np.random.default_rng(1)
    rows = [{"weight": round(float(w), 3), "brand": ["acme", "zeta", "omni"][i % 3],
             "label": 100 + 3 * w + [0, 20, 40][i % 3]} for i, w in enumerate(rng.uniform(0, 10, 200))]
    manifest = tmp_path / "prices.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    space = write_auto_space(manifest, home=tmp_path / "home", target="regression")
    data = prepare_data(manifest, space, home=tmp_path / "home")
    build_features(data, space)
    res = tune_linear(data, "val_r2", "max")
    assert res.best.model.kind == LINEAR and res.best.val_metrics["val_r2"] > 0.95
    assert res.best.val_outputs.shape == (len(data.indices(1)), 1)


def test_bagged_folds_share_one_layout_saved_once(shop, tmp_path, store_template):
    """Bagging refits a row member on each fold through one SVD fitted on the pooled rows: the
    logged bagged model holds each component array once (``members/svd``), not once per fold,
    and serves raw rows as the folds' weighted average."""
    import mlflow

    from autofusion import tracking
    from autofusion.search.folds import fold_splits
    from autofusion.serving.ensemble import Member, log_ensemble_model
    from autofusion.serving.explain import split_frame
    from autofusion.serving.trees import SVD
    from autofusion.train.trees import fit_features, refit
    from tests.helpers import new_store

    manifest, data = shop
    params = tune_trees(data, "val_accuracy", "max", configs=1).best.model.params
    pooled = fit_features(data, np.flatnonzero(data.split != TEST))
    assert pooled.components  # the review's TF-IDF is reduced
    folds = [refit(dataclasses.replace(data, split=s), params, features=pooled).model for s in fold_splits(data, 3, 0)]
    assert all(m.features is pooled for m in folds)
    uri = new_store(tmp_path / "mlruns", store_template)
    run = tracking.client(uri).create_run(tracking.experiment_id(uri, "bag")).info.run_id
    model_uri = log_ensemble_model(uri, run, [Member(m, None, 1 / 3, 1, None) for m in folds], data, name="bagged")
    root = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "dl")))
    members = next(root.rglob("members"))
    assert len(list((members / SVD).iterdir())) == len(pooled.components)
    assert not list(members.rglob("svd-*.npy"))
    test = data.indices(TEST)
    expected = sum(torch.softmax(torch.from_numpy(m.outputs(block_columns(data, m.features.blocks, test))), -1).numpy()
                   for m in folds) / 3
    pred = mlflow.pyfunc.load_model(model_uri).predict(split_frame(data, test))  # the request's columns
    np.testing.assert_allclose(pred[["prob_cheap", "prob_dear"]].to_numpy(), expected, atol=1e-6)

"""The row members (LightGBM, linear) read the embeddings a frozen pretrained encoder gave
each text field in the feature cache, beside its TF-IDF; logged, they carry that encoder's
backbone (one copy per ensemble), so they serve raw rows with no hub and no shelf, as they
were evaluated. A tiny BERT made here stands in for MiniLM."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from autofusion import tracking
from autofusion.data.prepare import prepare_data
from autofusion.data.splits import TEST
from autofusion.search.features import build_features
from autofusion.search.records import PERMUTATION, REMOVAL
from autofusion.search.trees import tree_config
from autofusion.serving.ensemble import Member, log_ensemble_model
from autofusion.serving.perturb import Perturbation
from autofusion.serving.pyfunc import BACKBONE_WEIGHTS, ArtifactContext
from autofusion.serving.trees import BACKBONES, TreePyfunc, save_tree_files
from autofusion.spaces.auto import write_auto_space
from autofusion.train.trees import EMBEDDING, block_columns, tree_blocks, tune_linear, tune_trees
from tests.helpers import new_store
from tests.tiny_models import tiny_bert

os.environ["HF_HUB_OFFLINE"] = "1"

WORDS = {"yes": "cat dog horse rabbit goat", "no": "car train boat truck plane"}  # words the tiny BERT knows


def _reviews(root, n: int = 160):
    """A label told by which words a review uses (and a price that tells nothing)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = ["no", "yes"][i % 2]
        words = WORDS[label].split() + "the a with and near".split()
        rows.append({"review": " ".join(rng.choice(words, size=int(rng.integers(3, 9)))),
                     "price": round(float(rng.uniform(1, 50)), 2), "label": label})
    path = root / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """(manifest, prepared data with the tiny BERT's frozen outputs, the BERT's folder)."""
    root = tmp_path_factory.mktemp("reviews")
    manifest = _reviews(root)
    space = write_auto_space(manifest, home=root / "home")
    bert = tiny_bert(root / "bert")
    space.file.encoders["text"].choices["hf_text"] = {"model": str(bert), "max_tokens": 8}
    data = prepare_data(manifest, space, home=root / "home")
    build_features(data, space, home=root / "home")
    return manifest, data, bert


def _request(manifest, data, idx) -> pd.DataFrame:
    return pd.read_csv(manifest).iloc[data.row_ids[idx] - 1].drop(columns=["label"]).reset_index(drop=True)


def _expected(data, model, idx) -> np.ndarray:
    return torch.softmax(torch.from_numpy(model.outputs(block_columns(data, model.features.blocks, idx))), -1).numpy()


def test_a_text_has_its_tfidf_block_and_its_embedding_block(reviews):
    _, data, _ = reviews
    blocks = {(b.input, b.output): b for b in tree_blocks(data)}
    assert set(blocks) == {("text", "x"), ("text", EMBEDDING), ("tabular", "x")}  # the review column's input: text
    emb = blocks[("text", EMBEDDING)]
    assert emb.key.startswith("hf_text-") and emb.key.endswith("@frozen") and emb.id != "text"
    cols = block_columns(data, [emb], data.indices(TEST))[emb.id]
    assert cols.shape[1] == 16 and np.allclose(np.linalg.norm(cols, axis=1), 1.0, atol=1e-5)  # unit rows


def test_an_input_two_encoders_embedded_has_one_embedding_block(reviews):
    """A member keeps its embeddings, and serves their backbones, by input: one per input."""
    _, data, _ = reviews
    key = next(b.key for b in tree_blocks(data) if b.embedding)
    other = key.replace("hf_text-", "hf_text2-")  # a second frozen encoder's outputs of the same text
    twice = dataclasses.replace(data, extractors={**data.extractors, other: data.extractors[key]},
                                features={**data.features, f"text|{other}": data.features[f"text|{key}"]})
    assert [(b.input, b.key) for b in tree_blocks(twice) if b.embedding] == [("text", key)]


@pytest.mark.parametrize("tune", [lambda d: tune_linear(d, "val_accuracy", "max"),
                                  lambda d: tune_trees(d, "val_accuracy", "max", configs=2)], ids=["linear", "trees"])
def test_the_member_serves_raw_rows_with_the_saved_backbone_alone(reviews, tmp_path, tune):
    manifest, data, bert = reviews
    model = tune(data).best.model
    assert set(model.embeddings) == {"text"}
    config = tree_config(model.params, data.meta.input_specs, model.keys, model.kind, model.embeddings)
    assert config[f"{model.kind}.embedding.text"].startswith("hf_text-") and config["encoder.text"] == model.kind
    test = data.indices(TEST)
    expected = _expected(data, model, test)
    (tmp_path / "meta.json").write_text(json.dumps(data.meta.to_json()))
    files = save_tree_files(tmp_path / "member", model, data)
    assert len(list((tmp_path / "member" / BACKBONES).iterdir())) == 1
    moved = bert.with_name("bert-gone")  # the shelf's weights are gone: the member has its own copy
    bert.rename(moved)
    try:
        py = TreePyfunc()
        ctx = ArtifactContext({"meta": str(tmp_path / "meta.json"), **files})
        py.load_context(ctx)
        rows = _request(manifest, data, test)
        pred = py.predict(ctx, rows)
    finally:
        moved.rename(bert)
    # trained on the cache's float16 embeddings, served on the backbone's float32 ones
    np.testing.assert_allclose(pred[["prob_no", "prob_yes"]].to_numpy(), expected, atol=2e-3)
    cache: dict = {}
    np.testing.assert_allclose(py.outputs(rows, cache), py.outputs(rows), atol=1e-9)
    order = np.random.default_rng(0).permutation(len(rows))
    for p in (Perturbation("text", ("review",), PERMUTATION, order), Perturbation("text", ("review",), REMOVAL),
              Perturbation("tabular", ("price",), REMOVAL)):
        np.testing.assert_allclose(py.outputs(rows, cache, p), py.outputs(p.frame(rows)), atol=1e-9)
    np.testing.assert_allclose(py.outputs(rows, cache), py.outputs(rows), atol=1e-9)  # the intact rows, unchanged


def test_an_ensemble_of_members_saves_and_runs_one_backbone(reviews, tmp_path, store_template):
    manifest, data, _ = reviews
    members = [tune_linear(data, "val_accuracy", "max").best.model,
               tune_trees(data, "val_accuracy", "max", configs=1).best.model]
    uri = new_store(tmp_path / "mlruns", store_template)
    run = tracking.client(uri).create_run(tracking.experiment_id(uri, "emb")).info.run_id
    model_uri = log_ensemble_model(uri, run, [Member(m, None, w, i, None) for i, (m, w) in
                                              enumerate(zip(members, (0.7, 0.3)))], data)
    logged = tracking.client(uri).get_logged_model(model_uri.rsplit("/", 1)[-1])
    members_dir = Path(urlparse(logged.artifact_location).path) / "artifacts" / "members"
    assert len(list((members_dir / BACKBONES).iterdir())) == 1  # not one per member
    assert not any((d / BACKBONES).exists() for d in members_dir.glob("member_*"))
    assert [p.name for p in (members_dir / BACKBONE_WEIGHTS).iterdir()] == ["0.pt"]  # the ensemble's one copy
    own = torch.load(next((members_dir / BACKBONES).iterdir()) / "weights.pt", weights_only=True)
    assert not [k for k in own if k.startswith("backbone.")]
    served = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    assert served.shared_backbones == 1  # loaded once per member, kept once
    first = {id(m.model.encoders["e0"].backbone) for m in served.members}
    assert len(first) == 1
    calls = []
    layer = served.members[0].model.encoders["e0"].backbone.embeddings
    handle = layer.register_forward_hook(lambda *a: calls.append(1))
    test = data.indices(TEST)
    try:
        out = served.outputs(_request(manifest, data, test))
    finally:
        handle.remove()
    assert len(calls) == 1  # one batch of rows, one forward pass for both members
    expected = sum(w * _expected(data, m, test) for m, w in zip(members, (0.7, 0.3)))
    np.testing.assert_allclose(out, expected, atol=2e-3)

"""Classical encoders: their features are fitted on the training split only, computed once per
search, shared by every trial that picks them, a model built on them trains, and the fitted
TF-IDF is saved inside the logged model."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import torch

from autofusion.data.prepare import prepare_data
from autofusion.data.splits import TRAIN
from autofusion.models.build import build_model
from autofusion.models.extractors import load_extractor
from autofusion.search.features import add_extractor, build_features
from autofusion.spaces.load import load_space
from autofusion.train.loop import fit, predict
from autofusion.trial import TrialConfig
from tests.helpers import flat_config, log_in_new_run


def _text_manifest(tmp_path, n: int = 60):
    rows = []
    for i in range(n):
        label = "ab"[i % 2]
        rows.append({"text": f"{'good' if label == 'a' else 'bad'} item number{i} unique{i}", "audio": "", "label": label})
    path = tmp_path / "m.csv"
    pd.DataFrame(rows).drop(columns="audio").to_csv(path, index=False)
    return path


def _text_space(tmp_path):
    import yaml

    from autofusion.spaces.load import SPACES_DIR

    raw = yaml.safe_load((SPACES_DIR / "text_audio.yaml").read_text())
    raw["modalities"] = {"text": {}}
    raw["encoders"] = {"text": {"choices": {"tfidf": {"char_ngrams": 0, "dim": 16}, "embedding_bag": {}}}}
    raw["fusion"] = {"choices": {"mid": {}, "late": {}}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_space(space=path)


def test_tfidf_vocabulary_comes_from_the_training_split_only(tmp_path):
    space = _text_space(tmp_path)
    data = prepare_data(_text_manifest(tmp_path), space, home=tmp_path / "h")
    notes = build_features(data, space)
    assert len(notes) == 1 and "tfidf" in notes[0]
    (key,) = data.extractors
    vocab = set(data.extractors[key].vectorizers[0].vocabulary_)
    texts = data.raw["text"]
    train_words = {w for t in texts[data.split == TRAIN] for w in t.split()}
    other_words = {w for t in texts[data.split != TRAIN] for w in t.split()} - train_words
    assert other_words and not (vocab & other_words)  # e.g. unique57 of a test row is unknown
    assert {"good", "bad"} <= vocab
    x = data.features[f"text|{key}"]["x"]
    assert x.shape == (len(texts), len(vocab)) and data.meta.feature_infos[key] == {"features": len(vocab)}


def test_features_are_built_once_and_shared_by_trials(tmp_path):
    space = _text_space(tmp_path)
    data = prepare_data(_text_manifest(tmp_path), space, home=tmp_path / "h")
    build_features(data, space)
    first = data.features.copy()
    assert build_features(data, space) == []  # already there: nothing is fitted again
    assert data.features.keys() == first.keys()
    key, built = add_extractor(data, "text", "tfidf", {"char_ngrams": 0, "dim": 64})  # dim does not shape features
    assert not built and key in data.extractors


def test_a_tfidf_model_learns_the_words(tmp_path):
    space = _text_space(tmp_path)
    data = prepare_data(_text_manifest(tmp_path, n=80), space, home=tmp_path / "h")
    build_features(data, space)
    flat = flat_config(["text"], {"text": "tfidf"}, "mid", **{"encoder.text.tfidf.char_ngrams": 0,
                                                             "encoder.text.tfidf.dim": 16, "train.epochs": 8,
                                                             "optimizer.lr": 3e-2})
    tc = TrialConfig.from_flat(flat, ["text"])
    torch.manual_seed(0)
    model = build_model(tc, data.meta)
    assert model.feature_keys["text"] in data.extractors
    history = fit(model, data, tc, device=torch.device("cpu"))
    assert max(h["val_accuracy"] for h in history) == 1.0
    assert np.isfinite(history[-1]["train_loss"])


def test_the_fitted_tfidf_travels_inside_the_logged_model(tmp_path, store_template):
    """The vocabulary and weights fitted on the training rows are saved with the model: a saved
    extractor transforms as the fitted one (unseen words included), and the loaded pyfunc
    predicts raw texts as the trained model does."""
    space = _text_space(tmp_path)
    manifest = _text_manifest(tmp_path, n=40)
    data = prepare_data(manifest, space, home=tmp_path / "h")
    build_features(data, space)
    flat = flat_config(["text"], {"text": "tfidf"}, "mid", **{"encoder.text.tfidf.char_ngrams": 0,
                                                             "encoder.text.tfidf.dim": 16, "train.epochs": 2})
    tc = TrialConfig.from_flat(flat, ["text"])
    torch.manual_seed(0)
    model = build_model(tc, data.meta)
    fit(model, data, tc, device=torch.device("cpu"))
    model.eval()
    key = model.feature_keys["text"]
    data.extractors[key].save(tmp_path / "saved")
    texts = ["good item number3 unique3", "bad words never seen", ""]
    saved, fitted = load_extractor(tmp_path / "saved").transform(texts)["x"], data.extractors[key].transform(texts)["x"]
    assert saved.shape == fitted.shape and (saved != fitted).nnz == 0  # sparse TF-IDF rows
    assert fitted[1].nnz == 1  # of "bad words never seen", only "bad" is in the training vocabulary
    model_uri, _ = log_in_new_run(tmp_path, model, tc, data, store_template, experiment="tfidf")
    loaded = mlflow.pyfunc.load_model(model_uri)
    rows = pd.read_csv(manifest).head(4)
    pred = loaded.predict(rows[["text"]])
    idx = np.array([int(np.flatnonzero(data.row_ids == i)[0]) for i in rows.index + 1])  # manifest rows in order
    out, _ = predict(model, data, idx, torch.device("cpu"))
    probs = pred[[f"prob_{c}" for c in data.meta.classes]].to_numpy()
    assert np.allclose(probs, torch.softmax(out, dim=-1).numpy(), atol=1e-5)

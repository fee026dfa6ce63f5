"""The classical image and audio encoders (pixels, mfcc_stats): their standardisation is fitted
on the training split only, the fitted extractors travel inside the logged model, and the
loaded pyfunc predicts from raw files exactly as the trained model does."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from autofusion.data.demo import write_demo
from autofusion.data.prepare import prepare_data
from autofusion.data.splits import TRAIN
from autofusion.models.build import build_model
from autofusion.models.extractors import load_extractor
from autofusion.search.features import build_features
from autofusion.spaces import load_space
from autofusion.train.loop import fit, predict
from autofusion.trial import TrialConfig
from tests.helpers import flat_config, log_in_new_run


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("classical")
    manifest = write_demo("image_audio", root / "demo", num_samples=40)
    space = load_space("image_audio")
    data = prepare_data(manifest, space, seed=0, home=root / "home")
    notes = build_features(data, space)
    return root, manifest, data, notes


def _extractor(data, name: str):
    (key,) = [k for k in data.extractors if k.startswith(f"{name}-")]
    return key, data.extractors[key]


def test_the_features_are_standardised_with_the_training_rows_only(prepared):
    _, _, data, notes = prepared
    assert any("image pixels" in n for n in notes) and any("audio mfcc_stats" in n for n in notes)
    for modality, name, width in (("image", "pixels", 3 * 16 * 16 + 3 * 16 + 4 * 8), ("audio", "mfcc_stats", 6 * 20)):
        key, ext = _extractor(data, name)
        train = data.raw[modality][data.split == TRAIN]
        raw_train = ext.features(list(train))
        assert np.allclose(ext.mean, raw_train.mean(axis=0), atol=1e-5)  # not the validation or test rows'
        assert not np.allclose(ext.mean, ext.features(list(data.raw[modality])).mean(axis=0), atol=1e-5)
        x = data.features[f"{modality}|{key}"]["x"]
        assert x.shape == (len(data.row_ids), width) and x.dtype == np.float32
        assert abs(float(x[data.split == TRAIN].mean())) < 1e-3
        assert data.meta.feature_infos[key] == {"features": width}


def test_with_a_home_the_per_file_features_are_cached_and_a_second_search_decodes_nothing(prepared, monkeypatch):
    """The feature cache holds pixel and MFCC statistics per distinct file: the first build
    computes each file's once (not once to fit and again to transform), a second build on the
    same data none, and both give the arrays and statistics of the build without a cache."""
    from autofusion.models.encoders.audio import MfccStatsExtractor
    from autofusion.models.encoders.image import PixelStatsExtractor

    root, manifest, plain, _ = prepared
    space = load_space("image_audio")
    seen: list[int] = []
    for cls in (PixelStatsExtractor, MfccStatsExtractor):
        def counted(self, cells, features=cls.features):
            seen.append(len(cells))
            return features(self, cells)

        monkeypatch.setattr(cls, "features", counted)
    for build in ("first", "second"):
        seen.clear()
        data = prepare_data(manifest, space, seed=0, home=root / "home")
        build_features(data, space, home=root / "home")
        distinct = sum(len(set(data.raw[m])) for m in ("image", "audio"))
        assert sum(seen) == (distinct if build == "first" else 0), (build, seen)
        for modality, name in (("image", "pixels"), ("audio", "mfcc_stats")):
            key, ext = _extractor(data, name)
            _, want = _extractor(plain, name)
            assert np.allclose(ext.mean, want.mean) and np.allclose(ext.std, want.std)
            assert np.allclose(data.features[f"{modality}|{key}"]["x"][:], plain.features[f"{modality}|{key}"]["x"][:],
                               atol=1e-5)


def test_a_saved_extractor_transforms_as_the_fitted_one(prepared, tmp_path):
    _, _, data, _ = prepared
    for modality, name in (("image", "pixels"), ("audio", "mfcc_stats")):
        key, ext = _extractor(data, name)
        ext.save(tmp_path / key)
        loaded = load_extractor(tmp_path / key)
        cells = data.raw[modality][:5]
        assert np.array_equal(loaded.transform(cells)["x"], ext.transform(cells)["x"])
        assert not list((tmp_path / key).glob("*.pkl"))  # JSON and arrays only


def test_the_logged_model_predicts_raw_files_as_it_trained(prepared, store_template):
    root, manifest, data, _ = prepared
    flat = flat_config(["image", "audio"], {"image": "pixels", "audio": "mfcc_stats"}, "mid",
                       **{"encoder.image.pixels.size": 16, "encoder.image.pixels.bins": 16,
                          "encoder.audio.mfcc_stats.n_mfcc": 20, "train.epochs": 2})
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    torch.manual_seed(0)
    model = build_model(tc, data.meta)
    fit(model, data, tc, device=torch.device("cpu"))
    model.eval()
    model_uri, _ = log_in_new_run(root, model, tc, data, store_template, experiment="classical")
    loaded = mlflow.pyfunc.load_model(model_uri)
    rows = pd.read_csv(manifest).head(4)
    raw = pd.DataFrame({c: [str(manifest.parent / p) for p in rows[c]] for c in ("image", "audio")})
    pred = loaded.predict(raw)
    probs = pred[[f"prob_{c}" for c in data.meta.classes]].to_numpy()
    idx = np.array([int(np.flatnonzero(data.row_ids == i)[0]) for i in rows.index + 1])  # demo rows in order
    out, _ = predict(model, data, idx, torch.device("cpu"))
    assert np.allclose(probs, torch.softmax(out, dim=-1).numpy(), atol=1e-5)

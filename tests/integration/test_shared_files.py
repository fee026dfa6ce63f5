"""1,000 rows that share 10 image files (and 10 texts): each file is decoded once, the real
(tiny) timm encoder embeds 10 images, a search trains on the shared entries, and the logged
model serves the 1,000 raw rows decoding each file once."""

from __future__ import annotations

import os
import threading

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from autofusion import tracking
from autofusion.data.arrays import IndexedRows
from autofusion.data.demo import write_shared_demo
from autofusion.data.prepare import prepare_data
from autofusion.modalities.image import ImageModality
from autofusion.models.encoders import _pretrained as pretrained
from autofusion.search.driver import run_search
from autofusion.search.features import build_features
from autofusion.search.records import SearchOptions
from autofusion.spaces.load import SPACES_DIR, load_space
from tests.helpers import new_store
from tests.tiny_models import tiny_timm

pytestmark = pytest.mark.slow  # one real search
os.environ["HF_HUB_OFFLINE"] = "1"
ROWS, FILES = 1000, 10


class Counts:
    """Calls of the image decoders and rows through the pretrained encoder, while installed."""

    def __init__(self, monkeypatch) -> None:
        self.decode, self.crop, self.embedded = [], [], []
        lock = threading.Lock()  # decoders run in threads
        decode, crop, outputs = ImageModality.decode, pretrained.decode_crop, pretrained.PretrainedEncoder.outputs

        def counted_decode(mod, source, prep):
            with lock:
                self.decode.append(str(source))
            return decode(mod, source, prep)

        def counted_crop(source, *a, **kw):
            with lock:
                self.crop.append(str(source))
            return crop(source, *a, **kw)

        def counted_outputs(enc, x):
            self.embedded.append(len(x))
            return outputs(enc, x)

        monkeypatch.setattr(ImageModality, "decode", counted_decode)
        monkeypatch.setattr(pretrained, "decode_crop", counted_crop)
        monkeypatch.setattr(pretrained.PretrainedEncoder, "outputs", counted_outputs)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, ray_local, store_template):
    root = tmp_path_factory.mktemp("shared")
    manifest = write_shared_demo("image_text", root / "demo", ROWS, files=FILES)
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["encoders"] = {"image": {"choices": {"timm": {"model": "test_vit", "checkpoint": str(tiny_timm(root / "vit.pth")),
                                                      "max_tokens": 4}}},
                       "text": {"choices": {"embedding_bag": {}}}}
    raw["fusion"] = {"choices": {"mid": {"dim": 16}}}
    raw["train"].update(strategy="frozen")
    (root / "space.yaml").write_text(yaml.safe_dump(raw))
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        counts = Counts(mp)
        data = prepare_data(manifest, load_space(space=root / "space.yaml"), seed=0, home=home)
        build_features(data, load_space(space=root / "space.yaml"), home=home)
    uri = new_store(root / "mlruns", store_template)
    result = run_search(SearchOptions(space=str(root / "space.yaml"), data=str(manifest), num_trials=2, max_epochs=1,
                                      concurrency=2, seed=0, tracking_uri=uri, home=str(home), quiet=True,
                                      scheduler="fifo"))
    return manifest, data, counts, result, uri


def test_each_shared_file_is_decoded_and_embedded_once(shared):
    _, data, counts, _, _ = shared
    assert len(data.row_ids) == ROWS
    assert len(counts.decode) == FILES and len(set(counts.decode)) == FILES  # the decode cache
    assert len(counts.crop) == FILES  # pixels at the encoder's size
    assert sum(counts.embedded) == FILES  # rows through the timm encoder
    image = data.arrays["image"]
    assert isinstance(image, IndexedRows) and image.distinct == FILES and len(image) == ROWS
    frozen = next(v for k, v in data.features.items() if k.startswith("image|") and k.endswith("@frozen"))
    assert all(isinstance(a, IndexedRows) and a.distinct == FILES for a in frozen.values())
    assert data.arrays["text"].distinct == FILES  # the texts repeat with their files too


def test_the_search_trains_on_the_shared_entries_and_reuses_the_caches(shared):
    _, _, _, result, _ = shared
    assert [t.status for t in result.trials] == ["finished", "finished"]
    assert result.best is not None and result.best.best_value is not None and result.model_uri
    assert result.data_summary["feature caches"] == "image.timm reused"  # built above, once


def test_the_logged_model_serves_the_raw_rows_decoding_each_file_once(shared, monkeypatch):
    manifest, _, _, result, uri = shared
    rows = pd.read_csv(manifest)
    frame = pd.DataFrame({"image": [str(manifest.parent / p) for p in rows["image"]], "text": rows["text"]})
    tracking.client(uri)
    model = mlflow.pyfunc.load_model(result.model_uri)
    counts = Counts(monkeypatch)
    out = model.predict(frame)
    assert len(out) == ROWS and len(counts.crop) == FILES  # the whole model's pixels, once per file
    same = out.groupby(rows["id"] % FILES)["label"].nunique()
    assert (same == 1).all()  # rows of one sample get one prediction
    assert set(out["label"]) <= {"alpha", "beta", "gamma", "delta"} and not np.any(out.isna())

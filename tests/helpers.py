"""Small synthetic PreparedData for model and training tests (no files, no decoding), and
new MLflow stores copied from the session's template."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from autofusion.data.prepare import DataMeta, PreparedData
from autofusion.modalities import MODALITIES, ModalityInfo

SHAPES = {"image": 32, "text": 12, "audio": (8000, 0.5), "video": (4, 32)}


def fake_data(modalities: list[str], n: int = 24, classes: int = 3, target: str = "classification",
              seed: int = 0) -> PreparedData:
    """Random inputs of the right shapes and dtypes, split 50/25/25."""
    rng = np.random.default_rng(seed)
    arrays, infos, prep = {}, {}, {}
    for m in modalities:
        p = MODALITIES.get(m).defaults(MODALITIES.get(m).Prep().model_dump())
        if m == "image":
            p["size"] = 32
            arrays[m] = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            infos[m] = ModalityInfo("image", image_size=32)
        elif m == "text":
            p["max_length"] = 12
            arrays[m] = rng.integers(0, 30, (n, 12)).astype(np.int32)
            arrays[m][:, 8:] = 0
            infos[m] = ModalityInfo("text", vocab_size=30, max_length=12)
        elif m == "audio":
            p.update(sample_rate=8000, seconds=0.5)
            arrays[m] = rng.standard_normal((n, 4000)).astype(np.float32) * 0.1
            infos[m] = ModalityInfo("audio", sample_rate=8000, num_samples=4000)
        elif m == "tabular":  # two numbers (standardised, then their missing flags) and a 3-category field
            p.update(numeric=["x1", "x2"], categorical=["kind"])
            z = rng.standard_normal((n, 2)).astype(np.float32)
            arrays[m] = np.concatenate([z, np.zeros((n, 2), np.float32),
                                        rng.integers(2, 5, (n, 1)).astype(np.float32)], axis=1)
            infos[m] = ModalityInfo("tabular", extra={"numeric": 2, "cardinalities": [5], "columns": ["x1", "x2", "kind"]})
        elif m == "sensor":
            p.update(length=16, channels=3)
            arrays[m] = rng.standard_normal((n, 3, 16)).astype(np.float32)
            infos[m] = ModalityInfo("sensor", extra={"channels": 3, "length": 16})
        else:
            p.update(frames=4, size=32)
            arrays[m] = rng.integers(0, 256, (n, 4, 3, 32, 32), dtype=np.uint8)
            infos[m] = ModalityInfo("video", image_size=32, frames=4)
        prep[m] = p
    if target == "classification":
        targets = (np.arange(n) % classes).astype(np.int64)
        names = [f"c{i}" for i in range(classes)]
    elif target == "multilabel":
        targets = (rng.random((n, classes)) < 0.4).astype(np.float32)
        names = [f"t{i}" for i in range(classes)]
    else:
        targets = rng.standard_normal((n, 1)).astype(np.float32)
        names = ["y"]
    split = np.zeros(n, dtype=np.int8)
    split[n // 2: 3 * n // 4] = 1
    split[3 * n // 4:] = 2
    meta = DataMeta(
        task="+".join(modalities), modalities=list(modalities), target=target, classes=names, infos=infos,
        prep=prep, states={"text": {"vocab": {"tokens": ["<pad>", "<unk>", *[f"w{i}" for i in range(28)]],
                                             "lowercase": True}}} if "text" in modalities else {},
        fingerprint="fake", manifest="fake.csv", columns={m: [m] for m in modalities}, rows=n, skipped=0,
        class_counts=np.bincount(targets[split == 0], minlength=classes).tolist() if target == "classification" else [],
    )
    present = {m: np.ones(n, dtype=bool) for m in modalities}
    raw = {}
    if "text" in modalities:
        words = meta.states["text"]["vocab"]["tokens"]
        raw["text"] = pd.Series([" ".join(words[t] for t in r if t > 1) for r in arrays["text"]], dtype=object)
    if "image" in modalities:  # file bytes, as a served request sends them: for feature extractors
        raw["image"] = pd.Series([_png(a) for a in arrays["image"]], dtype=object)
    if "audio" in modalities:
        raw["audio"] = pd.Series([_wav(a, 8000) for a in arrays["audio"]], dtype=object)
    return PreparedData(arrays, present, targets, split, np.arange(1, n + 1), meta, raw=raw)


def _png(chw: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).save(buf, format="PNG")
    return buf.getvalue()


def _wav(wave: np.ndarray, rate: int) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1, 1), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def flat_config(modalities: list[str], encoders: dict[str, str], fusion: str, **over) -> dict:
    """A complete flat trial configuration with cheap defaults."""
    flat = {**{f"encoder.{m}": encoders[m] for m in modalities}, "fusion.type": fusion, "fusion.weights": "learned",
            "head.hidden": 16, "head.dropout": 0.0, "loss.type": "cross_entropy", "optimizer.type": "adam",
            "optimizer.lr": 1e-3, "optimizer.weight_decay": 0.0, "train.batch_size": 8, "train.epochs": 1}
    flat.update(over)
    return flat


def new_store(folder: Path, template: Path) -> str:
    """A new MLflow sqlite store at ``folder/mlflow.db``, copied from ``template`` (the
    session's ``store_template``: an empty store, migrated once); returns its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


def log_in_new_run(root, model, tc, data, template: Path, experiment: str = "demo") -> tuple[str, str]:
    """Logs ``model`` as a trial's model is logged, in a new run of ``experiment`` in a new
    sqlite store under ``root`` (copied from ``template``); returns (the model's URI, the
    store's URI)."""
    from autofusion import tracking
    from autofusion.serving.pyfunc import log_fusion_model

    uri = new_store(root / "mlruns", template)
    run_id = tracking.client(uri).create_run(tracking.experiment_id(uri, experiment)).info.run_id
    return log_fusion_model(uri, run_id, model, tc, data), uri

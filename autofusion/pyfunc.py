"""The logged model: an MLflow pyfunc that takes raw inputs and preprocesses them itself.

Input: a DataFrame with one column per modality. Image, audio and video cells are file
paths, or the file's bytes base64-encoded (optionally as a ``data:...;base64,`` URI), so a
REST client can send them; text cells are text. Output: the predicted label and one
probability column per class (``prob_<class>``), or ``prediction`` for numeric targets.
The vocabulary, the image normalisation, the audio rate and the label names travel in the
model's artifacts, so serving preprocesses exactly like training.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    PythonModel = object  # type: ignore[misc,assignment]


def _source(cell: Any) -> Any:
    """A path, or the bytes of a base64 / data-URI cell."""
    from autofusion.data.decode import DecodeError

    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    text = str(cell).strip()
    is_uri = text.startswith("data:") and "," in text
    if is_uri:
        text = text.split(",", 1)[1]
    elif len(text) < 64 or _is_file(text):
        return Path(text)
    try:
        # line-wrapped base64 (MIME, the base64 tool) is still base64
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        if is_uri:
            raise DecodeError("the data: URI does not hold valid base64") from None
        raise DecodeError("no such file, nor valid base64") from None


def _is_file(text: str) -> bool:
    """Whether ``text`` names an existing file. A long base64 cell is no path: stat() fails on it with
    "File name too long" (ENAMETOOLONG), which ``Path.exists`` raises instead of returning False."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _describe(src: Any) -> str:
    """Names a cell in an error: the path tried (shortened), or the size of the decoded bytes."""
    if isinstance(src, bytes):
        return f"{len(src)} bytes of base64 data"
    text = str(src)
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _missing(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and np.isnan(cell)) or (isinstance(cell, str) and not cell.strip())


class FusionPyfunc(PythonModel):
    """Rebuilds the trained FusionModel from its config and weights; predicts from raw inputs."""

    def load_context(self, context: Any) -> None:
        import torch

        from autofusion.data.prepare import DataMeta
        from autofusion.data.text import Vocab
        from autofusion.models.build import build_model
        from autofusion.spaces.sample import Choice, TrialConfig

        self.meta = DataMeta.from_json(json.loads(Path(context.artifacts["meta"]).read_text()))
        raw = json.loads(Path(context.artifacts["trial_config"]).read_text())
        raw["encoders"] = {m: Choice(**c) for m, c in raw["encoders"].items()}
        for key in ("fusion", "loss", "optimizer", "lr_schedule"):
            raw[key] = Choice(**raw[key])
        self.tc = TrialConfig(**raw)
        self.model = build_model(self.tc, self.meta)
        self.model.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        self.model.eval()
        self.vocab = Vocab.from_json(self.meta.vocab) if self.meta.vocab else None

    def _inputs(self, df: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        from autofusion.data import decode as dec

        m = self.meta
        inputs, present = {}, {}
        for mod in m.modalities:
            if mod not in df.columns:
                raise ValueError(f"input lacks the {mod!r} column; expected columns: {', '.join(m.modalities)}")
            cells = df[mod].tolist()
            here = np.array([not _missing(c) for c in cells], dtype=bool)
            if not here.all() and mod not in m.allow_missing:
                raise ValueError(f"row {int(np.flatnonzero(~here)[0]) + 1}: empty {mod!r} cell")
            if mod == "text":
                arr = self.vocab.encode([str(c) if h else "" for c, h in zip(cells, here)], m.infos["text"].max_length)
            else:
                p = m.prep[mod]
                if mod == "image":
                    fn, shape = (lambda s: dec.decode_image(s, p["size"])), (3, p["size"], p["size"])
                elif mod == "audio":
                    n = m.infos["audio"].num_samples
                    fn, shape = (lambda s: dec.decode_audio(s, p["sample_rate"], n)), (n,)
                else:
                    fn, shape = (lambda s: dec.decode_video(s, p["frames"], p["size"])), (p["frames"], 3, p["size"], p["size"])
                rows = []
                for i, (c, h) in enumerate(zip(cells, here)):
                    if not h:
                        rows.append(np.zeros(shape, dtype=np.float32 if mod == "audio" else np.uint8))
                        continue
                    src: Any = c
                    try:
                        src = _source(c)
                        rows.append(fn(src))
                    except dec.DecodeError as exc:
                        raise ValueError(f"row {i + 1}: {mod}: {exc} ({_describe(src)})") from None
                arr = np.stack(rows)
            inputs[mod] = torch.from_numpy(arr)
            present[mod] = torch.from_numpy(here)
        return inputs, present

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        import torch

        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        inputs, present = self._inputs(df.reset_index(drop=True))
        with torch.no_grad():
            out = self.model(inputs, present).float()
        m = self.meta
        if m.target == "regression":
            return pd.DataFrame({"prediction": out[:, 0].numpy().astype(np.float64)})
        if m.target == "multilabel":
            probs = torch.sigmoid(out).numpy().astype(np.float64)
            labels = [",".join(c for c, p in zip(m.classes, row) if p >= 0.5) for row in probs]
        else:
            probs = torch.softmax(out, dim=-1).numpy().astype(np.float64)
            labels = [m.classes[i] for i in probs.argmax(axis=1)]
        res = pd.DataFrame({"label": labels})
        for j, c in enumerate(m.classes):
            res[f"prob_{c}"] = probs[:, j]
        return res


def input_example(data: Any, rows: int = 2) -> pd.DataFrame:
    """A few test rows as raw inputs: file cells base64-encoded so the example is self-contained."""
    from autofusion.data.manifest import read_manifest
    from autofusion.data.splits import TEST

    meta = data.meta
    manifest = Path(meta.manifest)
    df = read_manifest(manifest)
    idx = data.indices(TEST)[:rows] if len(data.indices(TEST)) else np.arange(min(rows, len(data.split)))
    picked = df.iloc[data.row_ids[idx] - 1]
    ex = {}
    for mod in meta.modalities:
        cells = picked[meta.columns[mod]].tolist()
        if mod == "text":
            ex[mod] = ["" if _missing(c) else str(c) for c in cells]
        else:
            ex[mod] = ["" if _missing(c) else base64.b64encode(_resolve(manifest, c).read_bytes()).decode("ascii")
                       for c in cells]
    return pd.DataFrame(ex)


def _resolve(manifest: Path, cell: Any) -> Path:
    p = Path(str(cell).strip())
    return p if p.is_absolute() else manifest.parent / p


def log_fusion_model(uri: str, run_id: str, model: Any, tc: Any, data: Any) -> str:
    """Logs the model as an MLflow pyfunc in the trial's run; returns its ``models:/`` URI."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    example = input_example(data)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        torch.save(model.state_dict(), t / "weights.pt")
        (t / "meta.json").write_text(json.dumps(data.meta.to_json()))
        (t / "trial_config.json").write_text(json.dumps(asdict(tc), default=str))
        artifacts = {k: str(t / f) for k, f in (("weights", "weights.pt"), ("meta", "meta.json"),
                                                  ("trial_config", "trial_config.json"))}
        py = FusionPyfunc()

        class _Ctx:
            pass

        ctx = _Ctx()
        ctx.artifacts = artifacts
        py.load_context(ctx)
        signature = infer_signature(example, py.predict(ctx, example))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=FusionPyfunc(), artifacts=artifacts, signature=signature,
                input_example=example, pip_requirements=_requirements(),
            )
    return info.model_uri


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("autofusion", "torch", "torchvision", "torchaudio", "mlflow", "pandas", "numpy", "pillow",
                "soundfile", "av"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            pass
    return reqs

"""Batch prediction of a manifest with a logged or registered model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from autofusion.data.manifest import parse_columns_flag, read_manifest, resolve_columns
from autofusion.errors import DataError, TrackingError


def load_model(uri: str, model_uri: str):
    """An MLflow pyfunc model by URI (``models:/NAME@alias``, ``runs:/...``, a path)."""
    import mlflow

    from autofusion import tracking

    tracking.client(uri)  # sets the global tracking and registry URIs
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"cannot load model {model_uri!r} from {uri}: {first}") from None


def predict_manifest(uri: str, model_uri: str, manifest: str | Path, output: str | Path,
                     columns: str | None = None, batch: int = 256) -> int:
    """Predicts every row of ``manifest``; writes its columns plus the predictions to ``output``."""
    out = Path(output)
    if out.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
        raise DataError(f"--output {str(out)!r}: use a .csv, .jsonl or .parquet file name")
    model = load_model(uri, model_uri)
    modalities = [c for c in model.metadata.get_input_schema().input_names()]
    manifest = Path(manifest).resolve()
    df = read_manifest(manifest)
    roles = resolve_columns(df, manifest, modalities, flag=parse_columns_flag(columns),
                            optional=("label", "split"))
    inputs = pd.DataFrame({m: df[roles[m]] for m in modalities})
    for m in modalities:
        if m != "text":
            inputs[m] = [_absolute(manifest.parent, v) for v in inputs[m]]
    preds = [model.predict(inputs.iloc[i:i + batch].reset_index(drop=True)) for i in range(0, len(inputs), batch)]
    pred = pd.concat(preds, ignore_index=True)
    pred.columns = [f"predicted_{c}" if c in df.columns else c for c in pred.columns]
    result = pd.concat([df.reset_index(drop=True), pred], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        result.to_csv(out, index=False)
    elif out.suffix.lower() == ".jsonl":
        result.to_json(out, orient="records", lines=True)
    else:
        result.to_parquet(out, index=False)
    return len(result)


def _absolute(base: Path, value: object) -> object:
    if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
        return value
    p = Path(str(value).strip())
    return str(p if p.is_absolute() else base / p)

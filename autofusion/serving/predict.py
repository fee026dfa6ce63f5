"""Batch prediction of a manifest with a logged or registered model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from autofusion import tracking
from autofusion.data.manifest import (
    ROLES,
    candidate_columns,
    parse_columns_flag,
)
from autofusion.data.reading import read_manifest
from autofusion.data.rows import resolve_path
from autofusion.errors import DataError, TrackingError
from autofusion.modalities import MODALITIES


def load_model(uri: str, model_uri: str, *, same_environment: bool = False) -> Any:
    """An MLflow pyfunc model by URI (``models:/NAME@alias``, ``runs:/...``, a path).
    ``same_environment``: the model was logged by this process, so MLflow's check of its
    requirements against the installed packages (about 0.2 s a load) is skipped."""
    import mlflow

    tracking.client(uri)  # sets the global tracking and registry URIs
    try:
        return mlflow.pyfunc.load_model(model_uri, suppress_warnings=same_environment)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"cannot load model {model_uri!r} from {uri}: {first}") from None


def load_once(uri: str, model_uri: str, loaded: dict[str, Any]) -> Any:
    """:func:`load_model`, kept in ``loaded`` so that the steps after a search load each model once."""
    if model_uri not in loaded:
        loaded[model_uri] = load_model(uri, model_uri, same_environment=True)
    return loaded[model_uri]


def predict_manifest(uri: str, model_uri: str, manifest: str | Path, output: str | Path,
                     columns: str | None = None, batch: int = 256) -> int:
    """Predicts every row of ``manifest``; writes its columns plus the predictions to ``output``."""
    out = Path(output)
    if out.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
        raise DataError(f"--output {str(out)!r}: use a .csv, .jsonl or .parquet file name")
    model = load_model(uri, model_uri)
    meta = model.unwrap_python_model().meta
    manifest = Path(manifest).resolve()
    df = read_manifest(manifest)
    inputs = request_frame(df, manifest, meta, parse_columns_flag(columns, roles=(*ROLES, *meta.input_names)))
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


def request_frame(df: pd.DataFrame, manifest: Path, meta: Any, flag: dict[str, list[str]]) -> pd.DataFrame:
    """The model's request columns taken from a manifest: for each input, the column
    ``--columns`` names (by input or modality), else the input's own name, else the column it
    was trained from, else the modality's usual column names; file paths made absolute."""
    out: dict[str, Any] = {}
    specs = [s for s in meta.input_specs if not s.joined]  # a joined input reads its columns' inputs
    for spec in specs:
        mod = MODALITIES.get(spec.modality)
        if not mod.one_input_per_column:  # a multi-column input is requested by its own columns
            cols = flag.get(spec.name) or flag.get(spec.modality) or list(spec.columns)
            lacking = [c for c in cols if c not in df.columns]
            if lacking:
                raise DataError(f"{manifest}: no column {lacking[0]!r} for the model's {spec.name} input; "
                                f"name its columns with --columns {spec.name}=COL,COL,...")
            out.update({c: df[c] for c in cols})
            continue
        alone = sum(s.modality == spec.modality for s in specs) == 1
        tries = [*flag.get(spec.name, []), *(flag.get(spec.modality, []) if alone else []), spec.name,
                 *spec.columns, *(candidate_columns(list(df.columns), spec.modality) if alone else [])]
        col = next((c for c in tries if c in df.columns), None)
        if col is None:
            raise DataError(f"{manifest}: no column for the model's {spec.name!r} input ({spec.modality}); "
                            f"columns are {', '.join(df.columns)}; name it with --columns {spec.name}=COLUMN")
        cells = df[col]
        out[spec.name] = [_absolute(manifest.parent, v) for v in cells] if mod.file_based else cells
    return pd.DataFrame(out)


def _absolute(base: Path, value: object) -> object:
    if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
        return value
    return resolve_path(base, value)

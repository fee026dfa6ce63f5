"""``autofusion explain`` and the search's own importance: which inputs a logged model needs.

:func:`explain_manifest` scores any logged or registered model (a single model or an
ensemble) on any labelled manifest; :func:`search_importance` scores the search's model on
its validation split and on its test split after the search, and logs the figures on the
search's run. Both load the model as it is served and compute
``serving.importance.input_importance``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from autofusion.data.labels import parse_labels
from autofusion.data.manifest import (
    ROLES,
    candidate_columns,
    parse_columns_flag,
)
from autofusion.data.prepare import DataMeta, PreparedData
from autofusion.data.reading import read_manifest
from autofusion.data.splits import TEST, VAL
from autofusion.errors import ConfigError, DataError
from autofusion.metrics import DEFAULT_METRIC
from autofusion.search.records import Importance, Settings
from autofusion.serving.importance import input_importance, scored_metric
from autofusion.serving.predict import load_model, load_once, request_frame
from autofusion.tracking import plots

log = logging.getLogger(__name__)


def explain_manifest(uri: str, model_uri: str, manifest: str | Path, *, columns: str | None = None,
                     metric: str | None = None, rows: int | None = None, seed: int = 0) -> Importance:
    """The importance of every input of model ``model_uri`` on ``manifest``'s labelled rows
    (all of them, or ``rows`` drawn at random); ``metric`` defaults to the target kind's search
    metric (macro-F1, RMSE).

    Raises:
        TrackingError: the model cannot be loaded.
        DataError: no label column, no labelled row, a label the model does not know.
        ConfigError: a metric that does not score this model.
    """
    manifest = Path(manifest).resolve()
    df = read_manifest(manifest)  # a missing manifest stops here, before the model loads
    py = load_model(uri, model_uri).unwrap_python_model()
    meta: DataMeta = py.meta
    metric = metric or DEFAULT_METRIC[meta.target][0].removeprefix("val_")
    try:
        scored_metric(metric, meta)
    except ValueError as exc:
        raise ConfigError(f"--metric: {exc}") from None
    flag = parse_columns_flag(columns, roles=(*ROLES, *meta.input_names))
    y, keep = labels(df, meta, flag, manifest)
    if rows is not None and rows < len(keep):
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=rows, replace=False))
    frame = request_frame(df.iloc[keep].reset_index(drop=True), manifest, meta, flag)
    try:
        return input_importance(py, frame, y[keep], metric, split=manifest.name, seed=seed)
    except ValueError as exc:  # a cell the model cannot read (the message names its row and column)
        raise DataError(f"{manifest}: {exc}") from None


def labels(df: pd.DataFrame, meta: DataMeta, flag: dict[str, list[str]],
           manifest: Path) -> tuple[np.ndarray, np.ndarray]:
    """The manifest's labels encoded as the model learned them (every row), and the rows that have one."""
    tries = [*flag.get("label", []), *meta.columns.get("label", []), *candidate_columns(list(df.columns), "label")]
    col = next((c for c in tries if c in df.columns), None)
    if col is None:
        raise DataError(f"{manifest}: no label column to score the model against (it learned "
                        f"{'/'.join(meta.columns.get('label', [])) or 'label'}); name it with --columns label=COLUMN")
    ds = SimpleNamespace(target=meta.target, label_delimiter=None)
    _, classes, targets, bad = parse_labels(df[col], ds, manifest, col)
    keep = np.array([i for i in range(len(df)) if i not in bad], dtype=np.int64)
    if len(keep) == 0:
        raise DataError(f"{manifest}: no row has a label in column {col!r}")
    if meta.target == "classification":
        folded = {c.casefold(): c for c in meta.classes}  # the model's spelling of a class (labels.spellings)
        classes = [c if c in meta.classes else folded.get(c.casefold(), c) for c in classes]
        unknown = [classes[t] for t in targets[keep] if classes[t] not in meta.classes]
        if unknown:
            raise DataError(f"{manifest}: label {unknown[0]!r} in column {col!r} is not one of the model's classes "
                            f"({', '.join(meta.classes)})")
        lookup = {c: meta.classes.index(c) for c in classes if c in meta.classes}
        targets = np.array([lookup.get(classes[t], 0) for t in targets], dtype=np.int64)
    elif meta.target == "multilabel":
        index = [meta.classes.index(c) if c in meta.classes else -1 for c in classes]
        if -1 in index:
            raise DataError(f"{manifest}: label {classes[index.index(-1)]!r} in column {col!r} is not one of the "
                            f"model's labels ({', '.join(meta.classes)})")
        multi = np.zeros((len(df), len(meta.classes)), dtype=np.float32)
        multi[:, index] = targets
        targets = multi
    elif (meta.target_scale or {}).get("log"):  # learned on the log scale
        targets = np.log(np.maximum(targets, np.finfo(np.float32).tiny)).astype(np.float32)
    return targets, keep


def search_importance(uri: str, writer: Any, model_uri: str | None, data: PreparedData, settings: Settings,
                      loaded: dict[str, Any], *,
                      on_validation: bool = True) -> tuple[Importance | None, Importance | None]:
    """The search's model's importance on validation and, beside its test metrics, on test;
    logged on the search's run (metrics ``importance.<input>`` and ``test_importance.<input>``,
    each with ``.low``/``.high`` and a ``_permutation`` twin; ``importance.json``; the chart).
    ``on_validation`` False: the model was fitted on the validation rows too (bagged), where
    its importance would flatter it: test only. A reading aid: anything that goes wrong is a
    warning, never a failed search."""
    if model_uri is None:
        return None, None
    t0 = time.perf_counter()
    try:
        model = load_once(uri, model_uri, loaded)
        py = model.unwrap_python_model()
        bare = scored_metric(settings.metric, data.meta).removeprefix("val_")
        splits = (("val", "validation", data.indices(VAL) if on_validation else data.indices(VAL)[:0]),
                  ("test", "test", data.indices(TEST)))
        found = [input_importance(py, split_frame(data, idx), data.targets[idx], f"{prefix}_{bare}", split=name,
                                  seed=settings.seed) if len(idx) > 1 else None for prefix, name, idx in splits]
    except Exception as exc:  # noqa: BLE001 - a reading aid, never a failure
        log.warning("no input importance: %s: %s", type(exc).__name__, exc)
        return None, None
    val, test = found
    metrics = {**(val.metrics() if val else {}), **(test.metrics("test_importance") if test else {})}
    writer.log_metrics(None, {**metrics, "importance_seconds": time.perf_counter() - t0})
    writer.log_file(None, "importance.json", json.dumps({"validation": _as_json(val), "test": _as_json(test)},
                                                        indent=1).encode())
    try:
        chart = plots.importance_chart(val, test)  # None: nothing measured (a split of one row)
        if chart is not None:
            writer.log_file(None, "plots/importance.png", chart)
    except Exception as exc:  # noqa: BLE001 - plots are a convenience
        log.info("skipped the importance plot: %s", exc)
    writer.flush()
    return val, test


def split_frame(data: PreparedData, idx: np.ndarray) -> pd.DataFrame:
    """Request rows for rows ``idx`` of the search's data: one column per request input (every
    column of a multi-column input), files as the resolved paths the search read."""
    out: dict[str, Any] = {}
    for spec in data.meta.input_specs:
        if spec.joined:
            continue
        cells = data.raw[spec.name]
        if isinstance(cells, pd.DataFrame):
            out.update({c: cells[c].iloc[idx].tolist() for c in cells.columns})
        else:
            out[spec.name] = cells.iloc[idx].tolist()
    return pd.DataFrame(out)


def _as_json(imp: Importance | None) -> dict | None:
    return asdict(imp) if imp is not None else None

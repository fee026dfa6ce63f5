"""How every method is scored: classification and regression metrics computed here from its
predictions on the same rows, the primary metrics the verdict is on, and ``Row``, one
method's line of the table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .datasets import Dataset


@dataclass
class Row:
    """One method's line in the table."""

    method: str
    kind: str                                  # sklearn | fixed | search | pretrained | published
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""
    error: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)   # per repeat: metrics, seconds, ...
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)        # the same metrics on the validation rows


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (over the classes present in the test labels)."""
    from sklearn.metrics import accuracy_score, f1_score

    t, p = [str(v) for v in y_true], [str(v) for v in y_pred]
    return {"accuracy": float(accuracy_score(t, p)),
            "f1_macro": float(f1_score(t, p, labels=sorted(set(t)), average="macro", zero_division=0))}


def probability_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    """ROC-AUC and log loss from class probabilities (columns in ``classes``' order): of two
    classes, ROC-AUC of the second (the positive one); of more, the macro mean of one-vs-rest
    ROC-AUCs over the classes the labels hold (none when they hold only one)."""
    from sklearn.metrics import log_loss, roc_auc_score

    t = np.array([str(v) for v in y_true], dtype=object)
    p = np.clip(np.asarray(proba, dtype=float), 0.0, None)
    p = p / np.where(p.sum(axis=1, keepdims=True) > 0, p.sum(axis=1, keepdims=True), 1.0)
    out = {}
    present = [j for j, c in enumerate(classes) if 0 < np.sum(t == c) < len(t)]
    if len(classes) == 2 and present:
        out["roc_auc"] = float(roc_auc_score(t == classes[1], p[:, 1]))
    elif present:
        out["roc_auc"] = float(np.mean([roc_auc_score(t == classes[j], p[:, j]) for j in present]))
    out["log_loss"] = float(log_loss(t, p, labels=classes))
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, log_target: bool, floor: float) -> dict[str, float]:
    """R2 (on the log target when it is positive; predictions below ``floor`` count as
    ``floor`` there), MAPE, MAE and RMSE on the original scale."""
    from sklearn.metrics import r2_score

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    y_pred = np.where(np.isfinite(y_pred), y_pred, np.nanmean(y_true))
    err = y_pred - y_true
    out = {"r2_log" if log_target else "r2": float(r2_score(np.log(y_true), np.log(np.maximum(y_pred, floor)))
                                                   if log_target else r2_score(y_true, y_pred))}
    if np.all(y_true != 0):
        out["mape"] = float(np.mean(np.abs(err) / np.abs(y_true)))
    out["mae"] = float(np.mean(np.abs(err)))
    out["rmse"] = float(np.sqrt(np.mean(err ** 2)))
    return out


def score(ds: Dataset, pred: np.ndarray, split: int = 2, proba: np.ndarray | None = None) -> dict[str, float]:
    """Every method's metrics on ``split`` (test by default), from its predictions in that
    split's row order (and, for classes, its probabilities: columns in ``ds.classes``' order)."""
    y = ds.y[ds.idx(split)]
    if ds.target == "classification":
        scores = classification_metrics(y, pred)
        return scores if proba is None else {**scores, **probability_metrics(y, proba, ds.classes)}
    train = ds.y[ds.idx(0)]
    return regression_metrics(y, pred, ds.log_target, float(np.nanmin(train[train > 0])) / 10 if ds.log_target else 0.0)


def primary_metrics(target: str, log_target: bool) -> list[str]:
    """The metrics the verdict is on: accuracy and macro-F1, or R2 (on the log target)."""
    return ["accuracy", "f1_macro"] if target == "classification" else (["r2_log"] if log_target else ["r2"])


def dataset_primary(ds: Dataset) -> list[str]:
    """The data set's verdict metrics: its own (imdb: ROC-AUC, the benchmark's), else the target's."""
    return list(ds.primary) if ds.primary else primary_metrics(ds.target, ds.log_target)


def aligned(proba: np.ndarray, columns: list[str], classes: list[str]) -> np.ndarray:
    """Probabilities whose columns stand for ``columns`` rearranged into ``classes``' order (a
    class with no column: 0)."""
    out = np.zeros((len(proba), len(classes)))
    where = {str(c): j for j, c in enumerate(columns)}
    for k, c in enumerate(classes):
        if c in where:
            out[:, k] = np.asarray(proba)[:, where[c]]
    return out


def published_rows(ds: Dataset) -> list[Row]:
    """The data set's published scores as fixed rows (their source in the note)."""
    return [Row(p.method, "published", dict(p.metrics), note="published test score: " + p.source)
            for p in ds.published]

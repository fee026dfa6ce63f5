"""Metric names and directions per target kind; light enough to import before torch."""

from __future__ import annotations

import re

# The validation metric a search ranks trials by when neither the flags nor the space name one.
# Classification ranks by macro-F1: a model that predicts the majority class scores its
# share of the rows in accuracy (0.61 on a 61/39 split, near any real model's score), but at
# most 1/K of a perfect score per class it never predicts in macro-F1, so it cannot win;
# on balanced classes macro-F1 ranks models as accuracy does. Accuracy is still reported.
DEFAULT_METRIC = {"classification": ("val_f1_macro", "max"), "multilabel": ("val_f1_macro", "max"),
                  "regression": ("val_rmse", "min")}
DEFAULT_LOSS = {"classification": "cross_entropy", "multilabel": "bce", "regression": "mse"}
METRICS = {
    "classification": ("loss", "accuracy", "f1_macro", "recall_macro", "precision_macro", "roc_auc", "pr_auc",
                       "log_loss"),
    "multilabel": ("loss", "f1_macro", "f1_micro", "exact_match", "roc_auc", "pr_auc"),
    "regression": ("loss", "rmse", "mae", "r2"),
}
# Scores of the predicted probabilities rather than the predicted classes (ROC-AUC and PR-AUC:
# one-vs-rest, macro over the classes with both positives and negatives; log loss).
PROBABILITY_METRICS = ("roc_auc", "pr_auc", "log_loss")
# Metrics that weigh every class equally whatever its size (what class-weighted losses aim at).
MACRO_METRICS = {"f1_macro", "recall_macro", "precision_macro"}
MIN_IS_BETTER = {"loss", "rmse", "mae"}
# Objectives a multi-objective search can add to the validation metric, with their directions.
EXTRA_OBJECTIVES = {"num_params": "min", "latency_ms": "min"}
# Per-class recall and precision (``val_recall.<class>``) are reported up to this many classes.
PER_CLASS_LIMIT = 20


def better(a: float | None, b: float | None, mode: str) -> bool:
    """Whether ``a`` is strictly better than ``b`` for a metric of ``mode`` (``max`` or
    ``min``); anything is better than nothing (``b`` None), nothing is better than nothing."""
    if a is None:
        return False
    return b is None or (a > b if mode == "max" else a < b)


def best_first(value: float, mode: str) -> float:
    """A sort key that puts the best value first for a metric of ``mode``."""
    return -value if mode == "max" else value


def val_metrics(target: str) -> list[str]:
    """The validation metrics a search can rank trials by for a target kind (``val_f1_macro``)."""
    return [f"val_{m}" for m in METRICS[target]]


def metric_names(target: str) -> list[str]:
    """Every per-epoch metric a trial reports for a target kind (per-class ones aside)."""
    return ["train_loss", *val_metrics(target)]


def metric_mode(metric: str) -> str:
    """``min`` for losses and errors, ``max`` for scores."""
    return "min" if metric.split("_", 1)[-1] in MIN_IS_BETTER or metric.endswith("_loss") else "max"


def is_macro(metric: str) -> bool:
    """Whether ``metric`` (``val_f1_macro``) weighs every class equally."""
    return metric.split("_", 1)[-1] in MACRO_METRICS


def class_keys(classes: list[str]) -> list[str]:
    """Each class name as it appears in a per-class metric's key (``val_recall.<key>``):
    characters MLflow does not allow in a key replaced by ``_``, cut to 40, made unique."""
    out: list[str] = []
    for i, name in enumerate(classes):
        key = re.sub(r"[^\w.\- ]", "_", str(name)).strip()[:40] or str(i)
        out.append(key if key not in out else f"{key}_{i}")
    return out

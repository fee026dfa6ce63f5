"""Metric names and directions per target kind; light enough to import before torch."""

from __future__ import annotations

DEFAULT_METRIC = {"classification": ("val_accuracy", "max"), "multilabel": ("val_f1_macro", "max"),
                  "regression": ("val_rmse", "min")}
DEFAULT_LOSS = {"classification": "cross_entropy", "multilabel": "bce", "regression": "mse"}
METRICS = {
    "classification": ("loss", "accuracy", "f1_macro"),
    "multilabel": ("loss", "f1_macro", "f1_micro", "exact_match"),
    "regression": ("loss", "rmse", "mae", "r2"),
}
MIN_IS_BETTER = {"loss", "rmse", "mae"}


def metric_names(target: str) -> list[str]:
    """Every per-epoch metric a trial reports for a target kind."""
    return ["train_loss", *(f"val_{m}" for m in METRICS[target])]


def metric_mode(metric: str) -> str:
    """``min`` for losses and errors, ``max`` for scores."""
    return "min" if metric.split("_", 1)[-1] in MIN_IS_BETTER or metric.endswith("_loss") else "max"

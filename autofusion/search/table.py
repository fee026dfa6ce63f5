"""The trial table: one row per trial, built from :class:`TrialRecord` s whether they come
from a search that just ended (the ``trials.csv`` artifact) or are read back from MLflow
(``autofusion trials``). Each consumer picks its columns from the same rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autofusion.search.records import TrialRecord


def trial_rows(trials: list[TrialRecord], metric: str, modalities: Sequence[str] = (),
               best_run_id: str | None = None, weights: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per trial: its configuration summary, best ``metric``, size, time and run.

    Args:
        trials: the trials, in the order the rows should have.
        metric: the search's validation metric; its column is named after it.
        modalities: one ``encoder.<modality>`` column each (the encoders column joins them all).
        best_run_id: the run of the search's best trial, marked in the ``best`` column.
        weights: run id -> weight of the kept ensemble's members (``ensemble_weight``; 0 otherwise).
    """
    rows = []
    for t in trials:
        lr = t.config.get("optimizer.lr")
        rows.append({
            "trial": t.number, "status": t.status, "fusion": t.config.get("fusion.type"),
            **{f"encoder.{m}": t.config.get(f"encoder.{m}") for m in modalities},
            "encoders": "+".join(str(v) for k, v in sorted(t.config.items())
                                 if k.count(".") == 1 and k.startswith("encoder.")),
            "optimizer": t.config.get("optimizer.type"), "lr": float(lr) if lr is not None else None,
            metric: t.best_value, "best_epoch": t.best_epoch, "epochs": len(t.history),
            "params": t.num_params, "latency_ms": t.latency_ms, "seconds": round(t.seconds, 2),
            "run_id": t.run_id, "error": t.error, "best": best_run_id is not None and t.run_id == best_run_id,
            "ensemble_weight": round((weights or {}).get(t.run_id or "", 0.0), 4), f"oof_{metric}": t.oof_value,
        })
    return rows


def csv_columns(metric: str, modalities: Sequence[str]) -> list[str]:
    """The columns of the ``trials.csv`` artifact logged on a search's run."""
    return ["trial", "status", "fusion", *(f"encoder.{m}" for m in modalities), metric, "best_epoch", "epochs",
            "params", "latency_ms", "seconds", "run_id", "error", "ensemble_weight"]


def view_columns(metric: str) -> list[str]:
    """The columns ``autofusion trials`` shows (``best`` marks a row, it is no column)."""
    return ["trial", "status", "fusion", "encoders", "optimizer", "lr", metric, "epochs", "params", "latency_ms",
            "run_id"]

"""Read-only views of what is in MLflow: a search's trials as a table."""

from __future__ import annotations

from typing import Any

from autofusion import tracking
from autofusion.errors import ConfigError


def trial_rows(uri: str, parent: Any) -> list[dict[str, Any]]:
    """One row per child run of a search, with its configuration summary and best metric."""
    metric = parent.data.params.get("search.metric", "val_accuracy")
    rows = []
    for ch in tracking.find_child_runs(uri, parent.info.experiment_id, parent.info.run_id):
        p, m, t = ch.data.params, ch.data.metrics, ch.data.tags
        encoders = "+".join(v for k, v in sorted(p.items()) if k.count(".") == 1 and k.startswith("encoder."))
        rows.append({
            "trial": int(t.get("autofusion.trial_number", 0)), "status": t.get("autofusion.status", "?"),
            "fusion": p.get("fusion.type", "?"), "encoders": encoders, "optimizer": p.get("optimizer.type", "?"),
            "lr": float(p["optimizer.lr"]) if "optimizer.lr" in p else None,
            metric: m.get(f"best_{metric}"), "epochs": int(t.get("autofusion.epochs_run", 0)),
            "params": int(m["num_params"]) if "num_params" in m else None,
            "latency_ms": m.get("latency_ms"), "run_id": ch.info.run_id,
            "best": t.get("autofusion.best") == "true",
        })
    return rows


def trials_table(uri: str, parent: Any, sort_by: str | None = None) -> Any:
    """A rich table of a search's trials, sorted by ``sort_by`` (default: the search metric)."""
    from rich.table import Table

    metric = parent.data.params.get("search.metric", "val_accuracy")
    mode = parent.data.params.get("search.mode", "max")
    rows = trial_rows(uri, parent)
    key = sort_by or metric
    if rows and key not in rows[0]:
        raise ConfigError(f"--sort {key!r}: unknown column; known: {', '.join(rows[0])}")
    descending = key == metric and mode == "max"
    rows.sort(key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0), reverse=False)
    if descending:
        rows.sort(key=lambda r: (r[key] is not None, r[key] if r[key] is not None else 0), reverse=True)
    t = Table(title=f"search {parent.info.run_id} ({len(rows)} trials)", title_justify="left")
    cols = ["trial", "status", "fusion", "encoders", "optimizer", "lr", metric, "epochs", "params", "latency_ms", "run_id"]
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*[_fmt(r[c]) + (" *" if c == "trial" and r["best"] else "") for c in cols])
    return t


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)

"""A search's trials read back from MLflow: each child run rebuilt as a :class:`TrialRecord`
from its tags (configuration, status, epochs, checkpoint) and metrics."""

from __future__ import annotations

import json
from typing import Any

from autofusion import tracking
from autofusion.metrics import best_first
from autofusion.search.records import TrialRecord


def record_from_run(client: Any, run: Any, metric: str, mode: str, *, number: int = 0,
                    history: bool = True) -> TrialRecord:
    """The trial of child run ``run``.

    With ``history`` every epoch's metrics are read and the best epoch found from them (what
    a resumed search needs); without, one call per run: the epochs are counted from the
    tags and the best value is the logged ``best_<metric>``.
    """
    tags, last = run.data.tags, run.data.metrics
    config = json.loads(tags["autofusion.config"]) if "autofusion.config" in tags else dict(run.data.params)
    rec = TrialRecord(tags.get("autofusion.trial_id", run.info.run_id),
                      int(tags.get("autofusion.trial_number", number)), config,
                      status=tags.get("autofusion.status", "finished"))
    rec.run_id = run.info.run_id
    rec.error = tags.get("autofusion.error")
    rec.planned_epochs = int(tags.get("autofusion.planned_epochs", 0))
    rec.checkpoint = tags.get("autofusion.checkpoint")
    rec.kind = tags.get("autofusion.model_kind", "fusion")
    epochs = int(tags.get("autofusion.epochs_run", 0))
    rec.history = [{} for _ in range(epochs)]
    rec.num_params = int(last["num_params"]) if "num_params" in last else None
    rec.latency_ms = last.get("latency_ms")
    rec.oof_value = last.get(f"oof_{metric}")
    if not history:
        rec.best_value = last.get(f"best_{metric}")
        rec.best_epoch = int(tags["autofusion.best_epoch"]) if "autofusion.best_epoch" in tags else None
        return rec
    for key in last:
        for m in client.get_metric_history(run.info.run_id, key):
            if 1 <= m.step <= epochs:
                rec.history[m.step - 1][key] = m.value
    rec.seconds = sum(h.get("epoch_seconds", 0.0) for h in rec.history)
    vals = [(h[metric], i + 1) for i, h in enumerate(rec.history) if metric in h]
    if vals:
        rec.best_value, rec.best_epoch = min(vals, key=lambda v: (best_first(v[0], mode), v[1]))
    return rec


def read_trials(uri: str, parent: Any) -> list[TrialRecord]:
    """The trials of search run ``parent`` as its child runs hold them now (one call per run)."""
    params = parent.data.params
    metric, mode = params.get("search.metric", "val_accuracy"), params.get("search.mode", "max")
    c = tracking.client(uri)
    return [record_from_run(c, run, metric, mode, history=False)
            for run in tracking.find_child_runs(uri, parent.info.experiment_id, parent.info.run_id)]

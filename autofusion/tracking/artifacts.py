"""What a search logs to MLflow when it ends: the best trial's confusion matrix and learning
curves on its run; the counts, best metrics, the ensemble, bagging (``bagging.json``, and each
bagged configuration's out-of-fold metric on its trial run), the trials table
(``trials.csv``), the Pareto front and the plots (the metric by fusion operator and by
encoder, the top trials' learning curves, Optuna's optimisation history and importances)
on the search's parent run. Plots are a convenience: one that cannot be drawn is skipped."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from autofusion.phases import METRIC_PREFIX
from autofusion.search.records import SearchResult, Settings, TrialRecord
from autofusion.search.table import csv_columns, trial_rows
from autofusion.tracking import plots
from autofusion.tracking.store import client, retry

log = logging.getLogger(__name__)


def _log_png(client: Any, run_id: str, png: bytes, path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / Path(path).name
        p.write_bytes(png)
        parent = str(Path(path).parent)
        client.log_artifact(run_id, str(p), None if parent == "." else parent)


def log_best_artifacts(uri: str, best: TrialRecord, classes: list[str], confusion: np.ndarray | None) -> None:
    """The test confusion matrix (classification: ``confusion`` is not None) and the learning
    curves on the best trial's run."""
    c = client(uri)
    try:
        if confusion is not None:
            _log_png(c, best.run_id, plots.confusion_matrix(confusion, classes), "plots/confusion_matrix.png")
            c.log_dict(best.run_id, {"classes": classes, "matrix": confusion.tolist()}, "confusion_matrix.json")
        curves = plots.trial_curves(best.history) if best.history else None
        if curves is not None:
            _log_png(c, best.run_id, curves, "plots/learning_curves.png")
    except Exception as exc:  # noqa: BLE001 - plots are a convenience, never a failure
        log.warning("could not log the best trial's plots: %s", exc)


def log_parent_summary(uri: str, result: SearchResult, study: Any, modalities: list[str]) -> dict[str, bytes]:
    """Best metrics, counts, the ensemble, the trials table and the plots on the search's
    parent run; returns the search's plots (name -> PNG) for the report."""
    import pandas as pd
    from mlflow.entities import Metric, RunTag

    c = client(uri)
    rid = result.parent_run_id
    metrics, tags = _summary_values(result)
    ms = [Metric(k, float(v), 0, 0) for k, v in metrics.items()]
    retry(lambda: c.log_batch(rid, metrics=ms, tags=[RunTag(k, v) for k, v in tags.items()]))
    cols = csv_columns(result.settings.metric, modalities)
    rows = trial_rows(result.trials, result.settings.metric, modalities, weights=ensemble_weights(result))
    df = pd.DataFrame([{k: row[k] for k in cols} for row in rows])
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "trials.csv"
        df.to_csv(p, index=False)
        c.log_artifact(rid, str(p))
    if result.pareto:
        c.log_dict(rid, [{"trial": t.number, "run_id": t.run_id, result.settings.metric: t.best_value,
                          "num_params": t.num_params, "latency_ms": t.latency_ms} for t in result.pareto],
                   "pareto_front.json")
    e = result.ensemble
    if e is not None:
        c.log_dict(rid, {"kept": e.kept, "metric": result.settings.metric, "value": e.val_value,
                         "best_trial_value": e.best_val_value, "candidates": e.candidates, "rounds": e.rounds,
                         "members": [{"trial": n, "run_id": r, "weight": w}
                                     for n, r, w in zip(e.trials, e.run_ids, e.weights)],
                         "val_metrics": e.val_metrics, "test_metrics": e.test_metrics, "model_uri": e.model_uri},
                   "ensemble.json")
    if result.bagged is not None:
        _log_bagging(c, result)
    drawn = search_plots(result, modalities)
    for name, png in drawn.items():
        _log_png(c, rid, png, f"plots/{name}.png")
    if study is not None:
        log_optuna_plots(c, rid, study, result.settings)
    return drawn


def _log_bagging(c: Any, result: SearchResult) -> None:
    """``bagging.json`` on the search's run (every configuration bagged: its own out-of-fold
    metric and its weight), and each configuration's out-of-fold metric (``oof_<metric>``) on
    its own trial run, beside the validation metric it was chosen on."""
    from mlflow.entities import Metric

    g, metric = result.bagged, result.settings.metric
    weights = dict(zip(g.trials, g.weights))
    by_number = {t.number: t for t in result.trials}
    members = [{"trial": n, "run_id": by_number[n].run_id if n in by_number else None, "kind": by_number[n].kind
                if n in by_number else None, f"oof_{metric}": v, "weight": weights.get(n, 0.0)}
               for n, v in g.oof_values.items()]
    c.log_dict(result.parent_run_id, {"folds": g.folds, "rows": g.rows, "metric": metric, "members": members,
                                      "oof_metrics": g.oof_metrics, "test_metrics": g.test_metrics,
                                      "model_uri": g.model_uri, "dropped": g.dropped, "seconds": g.seconds},
               "bagging.json")
    for m in members:
        if m["run_id"] and math.isfinite(m[f"oof_{metric}"]):
            retry(lambda m=m: c.log_batch(m["run_id"], metrics=[Metric(f"oof_{metric}", float(m[f"oof_{metric}"]), 0, 0)]))


def ensemble_weights(result: SearchResult) -> dict[str, float]:
    """Run id -> weight of the kept ensemble's members (empty when none is kept)."""
    e = result.ensemble
    if e is None or not e.kept:
        return {}
    return {r: w for r, w in zip(e.run_ids, e.weights) if r}


def _summary_values(result: SearchResult) -> tuple[dict[str, float], dict[str, str]]:
    """The parent run's metrics and tags. Its ``test_*`` metrics, ``autofusion.model_uri`` and
    ``autofusion.model_run_id`` are the search's model's: the ensemble's when it is kept (its
    run is the search's), else the best trial's."""
    s = result.settings
    counts = {st: sum(t.status == st for t in result.trials) for st in ("finished", "pruned", "failed")}
    metrics = {f"trials_{k}": float(v) for k, v in counts.items()}
    metrics["search_seconds"] = result.wall_seconds
    tags = {"autofusion.status": "finished"}
    if result.best is not None:
        metrics[f"best_{s.metric}"] = float(result.best.best_value)
        metrics.update(result.test_metrics)
        run = result.best.run_id or ""
        tags.update({"autofusion.best_run_id": run, "autofusion.best_trial": str(result.best.number),
                     "autofusion.model_uri": result.model_uri or "", "autofusion.model_run_id": run})
    e = result.ensemble
    if e is not None:
        metrics[f"ensemble_{s.metric}"] = e.val_value
        tags["autofusion.ensemble"] = "kept" if e.kept else "not kept"
        tags["autofusion.ensemble_members"] = ",".join(f"{n}:{w:.4f}" for n, w in zip(e.trials, e.weights))
        if e.kept:  # the search's run holds the ensemble: its validation and test metrics
            metrics.update({f"best_trial_{k}": v for k, v in result.test_metrics.items()})
            metrics.update(e.val_metrics)
            metrics.update(e.test_metrics)
            tags.update({"autofusion.model_uri": e.model_uri or "", "autofusion.model_run_id": result.parent_run_id})
    g = result.bagged
    if g is not None:  # the search's model: its out-of-fold and test metrics on the search's run
        if not (e is not None and e.kept):
            metrics.update({f"best_trial_{k}": v for k, v in result.test_metrics.items()})
        metrics.update({f"oof_{k}": v for k, v in g.oof_metrics.items()})
        metrics.update(g.test_metrics)
        metrics["bagging_folds"] = float(g.folds)
        tags.update({"autofusion.model_uri": g.model_uri or "", "autofusion.model_run_id": result.parent_run_id,
                     "autofusion.bagged": ",".join(f"{n}:{w:.4f}" for n, w in zip(g.trials, g.weights))})
    n = result.noise
    if n is not None:
        metrics.update({f"best_{s.metric}_low": n.low, f"best_{s.metric}_high": n.high,
                        "trials_tied_with_best": float(len(n.tied))})
        tags["autofusion.tied_with_best"] = ",".join(map(str, n.tied))
    d = result.default_trial
    if d is not None and d.best_value is not None:
        metrics[f"default_{s.metric}"] = float(d.best_value)
        tags["autofusion.default_trial"] = str(d.number)
    return metrics, tags


def search_plots(result: SearchResult, modalities: list[str]) -> dict[str, bytes]:
    """What the search learned, as PNGs: the metric by fusion operator and by encoder, and the
    top trials' learning curves; a plot that cannot be drawn is left out."""
    s = result.settings
    makers = {
        "metric_by_fusion": lambda: plots.metric_by_choice(result.trials, [("fusion.type", "fusion operator")],
                                                           s.metric, s.mode, result.best),
        "metric_by_encoder": lambda: plots.metric_by_choice(
            result.trials, [(f"encoder.{m}", f"{m} encoder") for m in modalities], s.metric, s.mode, result.best),
        "learning_curves": lambda: plots.top_learning_curves(result.trials, s.metric, s.mode),
    }
    out: dict[str, bytes] = {}
    for name, make in makers.items():
        try:
            png = make()
        except Exception as exc:  # noqa: BLE001 - plots are a convenience, never a failure
            log.info("skipped the %s plot: %s", name, exc)
            continue
        if png is not None:
            out[name] = png
    return out


def log_optuna_plots(client: Any, run_id: str, study: Any, settings: Settings) -> None:
    """Optuna's optimisation history and parameter importances (and Pareto front), each
    skipped if it cannot be drawn. Not its parallel-coordinate plot: with conditional
    parameters its axes overlap and show None; ``metric_by_*`` say it in seconds."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import optuna.visualization.matplotlib as ovm

    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    makers = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, target=target, target_name=settings.metric),
        "param_importances": lambda: ovm.plot_param_importances(study, target=target, target_name=settings.metric),
    }
    if multi:
        makers["pareto_front"] = lambda: ovm.plot_pareto_front(
            study, target_names=[settings.metric, *settings.objectives])
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
            fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
            _log_png(client, run_id, plots.png(fig), f"plots/{name}.png")
        except Exception as exc:  # noqa: BLE001 - e.g. too few completed trials for importances
            log.info("skipped the %s plot: %s", name, exc)


def log_phases(uri: str, run_id: str, seconds: dict[str, float]) -> None:
    """Where a search's time went (``autofusion/phases.py``) as its run's metrics
    ``phase_seconds.<phase>``: logged last, after its shutdown, so every phase is in."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(f"{METRIC_PREFIX}{k}", round(v, 3), now, 0) for k, v in seconds.items()]
    retry(lambda: client(uri).log_batch(run_id, metrics=items))

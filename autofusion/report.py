"""What a search leaves behind: the best trial (chosen on validation), its one test
evaluation, the Pareto front, the summary table, and the artifacts and plots logged to
MLflow (trials table, Optuna's optimisation history / importances / parallel coordinates,
the best trial's confusion matrix and learning curves)."""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from autofusion.data.prepare import PreparedData
from autofusion.data.splits import TEST
from autofusion.search import SearchResult, Settings, TrialRecord

log = logging.getLogger(__name__)


def best_trial(trials: list[TrialRecord], metric: str, mode: str) -> TrialRecord | None:
    """The trial with the best validation value at any epoch (finished or pruned)."""
    ok = [t for t in trials if t.best_value is not None and t.status in ("finished", "pruned")]
    if not ok:
        return None
    return (max if mode == "max" else min)(ok, key=lambda t: (t.best_value, -t.number) if mode == "max"
                                           else (t.best_value, t.number))


def objective_values(t: TrialRecord, settings: Settings) -> list[float] | None:
    """The trial's objectives, all turned into "smaller is better"."""
    from autofusion.search import EXTRA_OBJECTIVES

    if t.best_value is None:
        return None
    vals = [-t.best_value if settings.mode == "max" else t.best_value]
    for o in settings.objectives:
        v = {"num_params": t.num_params, "latency_ms": t.latency_ms}[o]
        if v is None:
            return None
        vals.append(float(v) if EXTRA_OBJECTIVES[o] == "min" else -float(v))
    return vals


def pareto_front(trials: list[TrialRecord], settings: Settings) -> list[TrialRecord]:
    """Non-dominated trials over the metric and the extra objectives."""
    pts = [(t, objective_values(t, settings)) for t in trials if t.status in ("finished", "pruned")]
    pts = [(t, v) for t, v in pts if v is not None]
    front = []
    for t, v in pts:
        dominated = any(all(a <= b for a, b in zip(w, v)) and any(a < b for a, b in zip(w, v)) for _, w in pts)
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: t.number)


def test_evaluation(model: Any, data: PreparedData) -> tuple[dict[str, float], dict[str, Any]]:
    """The one evaluation on the test split, with outputs kept for the confusion matrix."""
    import torch

    from autofusion.train import output_metrics, predict

    idx = data.indices(TEST)
    if len(idx) == 0:
        return {}, {}
    out, y = predict(model, data, idx, torch.device("cpu"))
    return output_metrics(out, y, data.meta, prefix="test"), {"outputs": out, "targets": y}


def _savefig(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _log_png(client: Any, run_id: str, png: bytes, path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / Path(path).name
        p.write_bytes(png)
        parent = str(Path(path).parent)
        client.log_artifact(run_id, str(p), None if parent == "." else parent)


def log_best_artifacts(uri: str, best: TrialRecord, data: PreparedData, extras: dict[str, Any]) -> None:
    """Confusion matrix (classification) and learning curves on the best trial's run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autofusion import tracking
    from autofusion.train import confusion

    c = tracking.client(uri)
    try:
        if data.meta.target == "classification" and extras:
            cm = confusion(extras["outputs"], extras["targets"], data.meta.num_outputs)
            fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(cm), 1 + 0.5 * len(cm)))
            ax.imshow(cm, cmap="Blues")
            names = data.meta.classes
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
            ax.set_yticks(range(len(names)), names)
            for (i, j), v in np.ndenumerate(cm):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title("test confusion matrix")
            _log_png(c, best.run_id, _savefig(fig), "plots/confusion_matrix.png")
            c.log_dict(best.run_id, {"classes": names, "matrix": cm.tolist()}, "confusion_matrix.json")
        if best.history:
            keys = sorted({k for h in best.history for k in h if k.endswith(("_loss", "_accuracy", "_f1_macro", "_rmse"))})
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
            for k in keys:
                ax = axes[0] if k.endswith("_loss") else axes[1]
                ax.plot(range(1, len(best.history) + 1), [h.get(k, np.nan) for h in best.history], marker="o", label=k)
            for ax, title in zip(axes, ("loss", "metrics")):
                ax.set_xlabel("epoch")
                ax.set_title(title)
                ax.legend(fontsize=7)
            _log_png(c, best.run_id, _savefig(fig), "plots/learning_curves.png")
    except Exception as exc:  # noqa: BLE001 - plots are a convenience, never a failure
        log.warning("could not log the best trial's plots: %s", exc)


def trials_rows(result: SearchResult, modalities: list[str]) -> list[dict[str, Any]]:
    rows = []
    for t in result.trials:
        row = {"trial": t.number, "status": t.status, "fusion": t.config.get("fusion.type"),
               **{f"encoder.{m}": t.config.get(f"encoder.{m}") for m in modalities},
               result.settings.metric: t.best_value, "best_epoch": t.best_epoch, "epochs": len(t.history),
               "params": t.num_params, "latency_ms": t.latency_ms, "seconds": round(t.seconds, 2),
               "run_id": t.run_id, "error": t.error}
        rows.append(row)
    return rows


def matching_trial(trials: list[TrialRecord], params: dict[str, Any]) -> TrialRecord | None:
    """The first trial whose every sampled parameter equals ``params`` (which may also hold
    parameters of choices the trial did not pick)."""
    for t in trials:
        shared = [k for k in t.config if k in params]
        if shared and all(t.config[k] == params[k] for k in shared):
            return t
    return None


def log_parent_summary(uri: str, result: SearchResult, study: Any, modalities: list[str]) -> None:
    """Best metrics, counts, the trials table and Optuna's plots on the search's parent run."""
    import pandas as pd

    from autofusion import tracking

    c = tracking.client(uri)
    rid = result.parent_run_id
    counts = {s: sum(t.status == s for t in result.trials) for s in ("finished", "pruned", "failed")}
    metrics = {f"trials_{k}": float(v) for k, v in counts.items()}
    metrics["search_seconds"] = result.wall_seconds
    tags = {"autofusion.status": "finished"}
    if result.best is not None:
        metrics[f"best_{result.settings.metric}"] = float(result.best.best_value)
        metrics.update(result.test_metrics)
        tags.update({"autofusion.best_run_id": result.best.run_id or "", "autofusion.best_trial": str(result.best.number),
                     "autofusion.model_uri": result.model_uri or ""})
    d = result.default_trial
    if d is not None and d.best_value is not None:
        metrics[f"default_{result.settings.metric}"] = float(d.best_value)
        tags["autofusion.default_trial"] = str(d.number)
    from mlflow.entities import Metric, RunTag

    ms = [Metric(k, float(v), 0, 0) for k, v in metrics.items()]
    tracking.retry(lambda: c.log_batch(rid, metrics=ms, tags=[RunTag(k, v) for k, v in tags.items()]))
    df = pd.DataFrame(trials_rows(result, modalities))
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "trials.csv"
        df.to_csv(p, index=False)
        c.log_artifact(rid, str(p))
    if result.pareto:
        c.log_dict(rid, [{"trial": t.number, "run_id": t.run_id, result.settings.metric: t.best_value,
                          "num_params": t.num_params, "latency_ms": t.latency_ms} for t in result.pareto],
                   "pareto_front.json")
    if study is not None:
        log_optuna_plots(c, rid, study, result.settings)


def log_optuna_plots(client: Any, run_id: str, study: Any, settings: Settings) -> None:
    """Optuna's own visualisations (matplotlib backend), each skipped if it cannot be drawn."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import optuna.visualization.matplotlib as ovm

    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, target=target, target_name=settings.metric),
        "param_importances": lambda: ovm.plot_param_importances(study, target=target, target_name=settings.metric),
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, target=target, target_name=settings.metric),
    }
    if multi:
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(
            study, target_names=[settings.metric, *settings.objectives])
    for name, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
            fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
            _log_png(client, run_id, _savefig(fig), f"plots/{name}.png")
        except Exception as exc:  # noqa: BLE001 - e.g. too few completed trials for importances
            log.info("skipped the %s plot: %s", name, exc)


def summary_table(result: SearchResult, modalities: list[str]) -> Any:
    """A rich table of the trials, best first."""
    from rich import box
    from rich.table import Table

    s = result.settings
    t = Table(title=f"{len(result.trials)} trials · {result.experiment} · chosen on {s.metric}", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    metric_col = s.metric.replace("_", " ", 1)
    for col in ("#", "status", "fusion", *modalities, metric_col, "epochs", "params", "time"):
        right = col in ("#", metric_col, "epochs", "params", "time")
        # on a narrow terminal, encoder names and the metric's header wrap; nothing else does
        t.add_column(col, justify="right" if right else "left", overflow="fold",
                     no_wrap=col not in (*modalities, metric_col))
    rank = sorted(result.trials, key=lambda r: (r.best_value is None,
                                                -(r.best_value or 0) if s.mode == "max" else (r.best_value or 0)))
    for r in rank:
        star = " *" if result.best is not None and r.trial_id == result.best.trial_id else ""
        t.add_row(
            f"{r.number}{star}", r.status, str(r.config.get("fusion.type")),
            *[str(r.config.get(f"encoder.{m}")) for m in modalities],
            f"{r.best_value:.4f}" if r.best_value is not None else "-",
            f"{len(r.history)}/{r.planned_epochs}",
            _human(r.num_params) if r.num_params else "-", f"{r.seconds:.1f}s",
        )
    return t


def _human(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def print_summary(result: SearchResult, modalities: list[str], console: Any) -> None:
    """The table, the counts, the best trial's test metrics and where its model went."""
    console.print(summary_table(result, modalities))
    counts = {s: sum(t.status == s for t in result.trials) for s in ("finished", "pruned", "failed")}
    console.print(f"{counts['finished']} finished, {counts['pruned']} pruned early, {counts['failed']} failed "
                  f"in {result.wall_seconds:.0f}s (data: {result.data_summary})", highlight=False)
    for t in result.trials:
        if t.status == "failed":
            console.print(f"  trial {t.number} failed: {t.error}", highlight=False)
    if result.pareto:
        console.print("Pareto front (" + ", ".join([result.settings.metric, *result.settings.objectives]) + "): " +
                      ", ".join(f"trial {t.number} ({t.best_value:.4f}, {_human(t.num_params or 0)} params, "
                                f"{t.latency_ms or 0:.1f} ms)" for t in result.pareto), highlight=False)
    if result.best is None:
        console.print("No trial produced a validation metric; nothing was logged as a model.")
        return
    b = result.best
    test = ", ".join(f"{k}={v:.4f}" for k, v in result.test_metrics.items())
    console.print(f"Best: trial {b.number} ({b.config.get('fusion.type')} fusion), "
                  f"{result.settings.metric}={b.best_value:.4f} at epoch {b.best_epoch}; test: {test}", highlight=False)
    d = result.default_trial
    if d is not None and d.best_value is not None:
        stopped = f", stopped at epoch {len(d.history)}" if d.status == "pruned" else ""
        gain = "it is the best" if d is b else f"the search's best is {b.best_value - d.best_value:+.4f}"
        console.print(f"Hand-built default (trial {d.number}, {d.config.get('fusion.type')} fusion{stopped}): "
                      f"{result.settings.metric}={d.best_value:.4f}; {gain}", highlight=False)
    console.print(f"Model: {result.model_uri} (run {b.run_id}, search {result.parent_run_id}, store {result.tracking_uri})",
                  highlight=False)
    console.print(f"Register it: autofusion promote --search {result.parent_run_id}"
                  + ("" if result.tracking_uri.endswith("mlruns/mlflow.db") else f" --tracking-uri {result.tracking_uri}"),
                  highlight=False)
    for e in result.tracking_errors[:3]:
        console.print(f"[yellow]MLflow write lost after retries:[/] {e}")

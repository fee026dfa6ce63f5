"""The tables the CLI prints: a finished search's summary, and a search's trials read
back from MLflow (``autofusion trials``)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from autofusion.errors import ConfigError
from autofusion.metrics import best_first
from autofusion.phases import phase_line
from autofusion.search.records import SearchResult, TrialRecord, final_kind, member_name
from autofusion.search.table import trial_rows, view_columns


def summary_table(result: SearchResult, modalities: list[str]) -> Any:
    """A rich table of the trials, best first."""
    s = result.settings
    t = Table(title=f"{len(result.trials)} trials · {result.experiment} · chosen on {s.metric}", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    metric_col = s.metric.replace("_", " ", 1)
    for col in ("#", "status", "fusion", *modalities, metric_col, "epochs", "params", "time"):
        right = col in ("#", metric_col, "epochs", "params", "time")
        # on a narrow terminal, encoder names and the metric's header wrap; nothing else does
        t.add_column(col, justify="right" if right else "left", overflow="fold",
                     no_wrap=col not in (*modalities, metric_col))
    rank = sorted(result.trials, key=lambda r: (r.best_value is None, best_first(r.best_value or 0, s.mode)))
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


def cache_line(result: SearchResult) -> str | None:
    """What the pretrained encoders' feature cache cost this search, and that later searches on
    the same data reuse it; None when the search used no pretrained encoder."""
    said = result.data_summary.get("feature caches")
    if not said:
        return None
    built = "built" in said
    took = result.phases.get("features")
    return (f"Pretrained feature cache: {said}" + (f"; the features phase took {took:.1f}s" if took is not None else "")
            + ("; later searches on this data reuse it" if built else " (computed by an earlier search)"))


def print_summary(result: SearchResult, modalities: list[str], console: Any) -> None:
    """The table, the counts, the best trial's test metrics and where its model went."""
    console.print(summary_table(result, modalities))
    counts = {s: sum(t.status == s for t in result.trials) for s in ("finished", "pruned", "failed")}
    console.print(f"{counts['finished']} finished, {counts['pruned']} pruned early, {counts['failed']} failed "
                  f"in {result.wall_seconds:.0f}s (data: {result.data_summary})", highlight=False)
    if result.phases:
        console.print(f"Where the time went: {phase_line(result.phases)}", highlight=False, markup=False)
    caches = cache_line(result)
    if caches:
        console.print(caches, highlight=False, markup=False)
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
    console.print(f"Best: trial {b.number} ({member_name(b)}), "
                  f"{result.settings.metric}={b.best_value:.4f} at epoch {b.best_epoch}; test: {test}", highlight=False)
    if result.noise is not None:
        console.print("Validation noise: " + result.noise.text(result.settings.metric, b.best_value), highlight=False,
                      markup=False)
    shown = result.importance or result.test_importance  # the search's model (serving/importance.py)
    if shown is not None:
        console.print("Importance: " + shown.text(), highlight=False, markup=False)
    d = result.default_trial
    if d is not None and d.best_value is not None:
        stopped = f", stopped at epoch {len(d.history)}" if d.status == "pruned" else ""
        gain = "it is the best" if d is b else f"the search's best is {b.best_value - d.best_value:+.4f}"
        console.print(f"Hand-built default (trial {d.number}, {d.config.get('fusion.type')} fusion{stopped}): "
                      f"{result.settings.metric}={d.best_value:.4f}; {gain}", highlight=False)
    e = result.ensemble
    if e is not None:
        console.print(ensemble_line(result), highlight=False, markup=False)
    if result.bagged is not None:
        console.print(bagged_line(result), highlight=False, markup=False)
    final = final_kind(result.bagged, e)
    where = (f"run {b.run_id}, search {result.parent_run_id}, store {result.tracking_uri}" if final == "best" else
             f"{'bagged' if final == 'bagged' else 'the ensemble'}, in search run {result.parent_run_id}; the best "
             f"trial's: {result.model_uri}; store {result.tracking_uri}")
    console.print(f"Model: {result.final_model_uri} ({where})", highlight=False, markup=False)
    if result.report_path:
        console.print(f"Report: {result.report_path}", highlight=False, markup=False)
    console.print(f"Register it: autofusion promote --search {result.parent_run_id}"
                  + ("" if result.tracking_uri.endswith("mlruns/mlflow.db") else f" --tracking-uri {result.tracking_uri}"),
                  highlight=False)
    for e in result.tracking_errors[:3]:
        console.print(f"[yellow]MLflow write lost after retries:[/] {e}")


def ensemble_line(result: SearchResult) -> str:
    """The ensemble's summary line: its members and weights, how it did against the best trial
    on validation, whether it is kept and, if so, its test metrics."""
    e, metric = result.ensemble, result.settings.metric
    vs = f"{metric}={e.val_value:.4f} against the best trial's {e.best_val_value:.4f}"
    if e.kept:
        role = "kept, bagged below" if result.bagged is not None else "kept, the search's model"
        return f"Ensemble ({role}): {e.members_text()}; {vs}; test: {_scores(e.test_metrics)}"
    return (f"Ensemble not kept ({e.members_text()}; {vs}): greedy selection over {e.candidates} trials found "
            "nothing better than the best trial")


def bagged_line(result: SearchResult) -> str:
    """The bagged model's summary line: its folds, configurations and weights, its out-of-fold
    metric over the pooled rows, and its test metrics."""
    g, metric = result.bagged, result.settings.metric
    oof = g.oof_metrics.get(metric)
    dropped = f"; left out: {'; '.join(g.dropped)}" if g.dropped else ""
    return (f"Bagged (the search's model): {g.folds} folds of the {g.rows} training and validation rows for "
            f"{g.members_text()} (weights from out-of-fold outputs), in {g.seconds:.0f}s; out-of-fold "
            f"{metric}={oof:.4f} over all {g.rows} rows{dropped}; test: {_scores(g.test_metrics)}"
            + (f"\nEach configuration bagged, out of fold ({metric}, weight): {g.each_text()}" if g.oof_values else ""))


def _scores(metrics: dict[str, float]) -> str:
    """Test metrics on one line, per-class ones left out."""
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "." not in k)


def trials_table(parent: Any, trials: list[TrialRecord], sort_by: str | None = None) -> Any:
    """A rich table of search run ``parent``'s trials, sorted by ``sort_by`` (default: the search metric)."""
    metric = parent.data.params.get("search.metric", "val_accuracy")
    mode = parent.data.params.get("search.mode", "max")
    cols = view_columns(metric)
    if any(t.oof_value is not None for t in trials):  # a bagged search: each configuration's out-of-fold value
        cols.insert(cols.index(metric) + 1, f"oof_{metric}")
    rows = [{k: row[k] for k in [*cols, "best"]}
            for row in trial_rows(trials, metric, best_run_id=parent.data.tags.get("autofusion.best_run_id"))]
    key = sort_by or metric
    if rows and key not in rows[0]:
        raise ConfigError(f"--sort {key!r}: unknown column; known: {', '.join(rows[0])}")
    descending = key == metric and mode == "max"
    rows.sort(key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0), reverse=False)
    if descending:
        rows.sort(key=lambda r: (r[key] is not None, r[key] if r[key] is not None else 0), reverse=True)
    t = Table(title=f"search {parent.info.run_id} ({len(rows)} trials)", title_justify="left")
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

"""The search's one-page HTML report: the result, the leaderboard, what the search learned
about fusion (plots), the ensemble, bagging (each configuration out of fold), which inputs
the search's model needs and how fast it answers, and the test evaluation.

Self-contained: styles inline, plots embedded as base64 PNGs, no script and no URL to
fetch, so it opens offline, from a mail attachment as well as from the store. It is logged
with the search's run (``report.html``) and written beside the store (for
``sqlite:///mlruns/mlflow.db``: ``mlruns/reports/search-<run id>.html``).
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from autofusion.metrics import best_first
from autofusion.search.records import SearchResult, TrialRecord, member_name, number_text
from autofusion.tracking import plots as drawing
from autofusion.tracking.store import client, retry

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;margin:0 auto;max-width:1100px;
padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 16px}.box{background:#f5f7fa;border:1px solid #dde3ea;border-radius:6px;padding:10px 14px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{padding:3px 9px;text-align:left;
border-bottom:1px solid #eee}th{background:#fafafa}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#fff4d6;font-weight:600}tr.failed td{color:#999}img{max-width:100%;margin:6px 0}
.fig{display:inline-block;vertical-align:top;margin-right:14px}.cap{color:#555;font-size:12px;max-width:640px}
code{background:#f0f0f0;padding:1px 4px;border-radius:3px}
"""

PLOT_CAPTIONS = {
    "metric_by_fusion": "Best validation {metric} of every trial by fusion operator (one point per trial, "
                        "grey tick: the operator's best, red star: the search's best).",
    "metric_by_encoder": "The same points by encoder, one panel per modality.",
    "learning_curves": "Validation {metric} per epoch of the top trials (circle: each trial's best epoch). "
                       "A curve still improving at its last epoch would have gained from more epochs.",
    "confusion_matrix": "The search's model on the test split (rows: true class).",
}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None,
           numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="n">{c}</td>' if j in numeric else f"<td>{c}</td>" for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _metrics_text(metrics: dict[str, float]) -> str:
    shown = {k: v for k, v in metrics.items() if "." not in k}  # per-class values are in MLflow
    return ", ".join(f"{_e(k)} {_num(v)}" for k, v in shown.items()) or "-"


def _leaderboard(result: SearchResult, modalities: list[str]) -> str:
    s = result.settings
    weights = {}
    if result.ensemble is not None and result.ensemble.kept:
        weights = dict(zip(result.ensemble.trials, result.ensemble.weights))
    order = sorted(result.trials, key=lambda t: (t.best_value is None, best_first(t.best_value or 0, s.mode), t.number))
    header = ["#", "trial", "status", "fusion", *[f"{m} encoder" for m in modalities], "optimizer", "lr", s.metric,
              "best epoch", "epochs", "params", "time (s)", "ensemble weight"]
    rows, classes = [], []
    for rank, t in enumerate(order, 1):
        lr = t.config.get("optimizer.lr")
        rows.append([str(rank), str(t.number), _e(t.status) + (f": {_e(t.error)}" if t.error else ""),
                     _e(t.config.get("fusion.type")), *[_e(t.config.get(f"encoder.{m}")) for m in modalities],
                     _e(t.config.get("optimizer.type")), f"{float(lr):.2g}" if lr is not None else "-",
                     _num(t.best_value), _num(t.best_epoch), f"{len(t.history)}/{t.planned_epochs}",
                     _params(t.num_params), f"{t.seconds:.1f}", _num(weights.get(t.number), 2) if t.number in weights
                     else ""])
        classes.append("best" if result.best is not None and t is result.best else
                       "failed" if t.status == "failed" else "")
    right = {"#", "trial", "lr", s.metric, "best epoch", "epochs", "params", "time (s)", "ensemble weight"}
    return _table(header, rows, classes, numeric={i for i, h in enumerate(header) if h in right})


def _outcome(result: SearchResult) -> str:
    s, b, e = result.settings, result.best, result.ensemble
    if b is None:
        return '<p class="box">No trial produced a validation metric; nothing was logged as a model.</p>'
    lines = [f"<b>Best trial:</b> trial {b.number} ({_e(member_name(b))}), "
             f"{_e(s.metric)} {_num(b.best_value)} at epoch {_num(b.best_epoch)}; test: "
             f"{_metrics_text(result.test_metrics)}"]
    g = result.bagged
    if e is not None and e.kept:
        role = "kept; its members are bagged below" if g is not None else "the search's model"
        lines.append(f"<b>Ensemble ({role}):</b> {_e(e.members_text())}; {_e(s.metric)} "
                     f"{_num(e.val_value)} against the best trial's {_num(e.best_val_value)}; test: "
                     f"{_metrics_text(e.test_metrics)}")
    if g is not None:
        lines.append(f"<b>Bagged (the search's model):</b> {_e(g.members_text())}, {g.folds} folds of {g.rows} "
                     f"training and validation rows; out-of-fold {_e(s.metric)} {_num(g.oof_metrics.get(s.metric))}; "
                     f"test: {_metrics_text(g.test_metrics)}")
    if result.noise is not None:
        lines.append(f"<b>Validation noise:</b> {_e(result.noise.text(s.metric, b.best_value))}")
    for what, uri in (("the search's model", result.final_model_uri), ("the best trial's model", result.model_uri)):
        if uri in result.latency and (what == "the search's model" or uri != result.final_model_uri):
            lines.append(f"<b>Served speed of {what}:</b> {_e(result.latency[uri].text())} (raw rows through "
                         "MLflow's pyfunc on this machine, measured after logging)")
    d = result.default_trial
    if d is not None and d.best_value is not None:
        lines.append(f"<b>Hand-built default:</b> trial {d.number} ({_e(d.config.get('fusion.type'))} fusion), "
                     f"{_e(s.metric)} {_num(d.best_value)}")
    lines.append(f"<b>Model:</b> <code>{_e(result.final_model_uri)}</code>; register it with "
                 f"<code>autofusion promote --search {_e(result.parent_run_id)}</code>")
    return '<div class="box">' + "<br>".join(lines) + "</div>"


def _ensemble_section(result: SearchResult, by_number: dict[int, TrialRecord], modalities: list[str]) -> str:
    e, s = result.ensemble, result.settings
    if e is None:
        return ("<p>No ensemble: fewer than two trials kept validation outputs (the best trial alone is the "
                "search's model).</p>")
    verdict = ("kept: it beats the best trial on validation and is the search's model" if e.kept else
               "not kept: it does not beat the best trial on validation, so the best trial is the search's model")
    if result.bagged is not None:
        verdict = ("kept: it beats the best trial on validation" if e.kept else
                   "not kept: it does not beat the best trial on validation") + (
            "; its members are the configurations bagged below, whose bagged model is the search's")
    intro = (f"<p>Greedy ensemble selection (Caruana et al. 2004) over {e.candidates} trials' validation outputs, "
             f"{e.rounds} rounds with replacement: {_e(s.metric)} {_num(e.val_value)} against the best trial's "
             f"{_num(e.best_val_value)}; <b>{verdict}</b>.</p>")
    rows = []
    for n, w in zip(e.trials, e.weights):
        t = by_number.get(n)
        cfg = t.config if t is not None else {}
        rows.append([str(n), f"{w:.2f}", _e(cfg.get("fusion.type")), *[_e(cfg.get(f"encoder.{m}")) for m in modalities],
                     _num(t.best_value if t is not None else None)])
    table = _table(["trial", "weight", "fusion", *[f"{m} encoder" for m in modalities], s.metric], rows,
                   numeric={0, 1, 3 + len(modalities)})
    test = f"<p>Test: {_metrics_text(e.test_metrics)}</p>" if e.kept else ""
    return intro + table + test


def _bagging_section(result: SearchResult, by_number: dict[int, TrialRecord], modalities: list[str]) -> str:
    """Each configuration bagged: its own validation metric (what the search chose it on), its
    own out-of-fold metric over every pooled row, and its weight in the bagged model."""
    g, s = result.bagged, result.settings
    if g is None:
        return ("<p>Not bagged: the search's model was trained on the training rows and chosen on validation "
                "(bagging runs by default on at most 1,000 training and validation rows).</p>")
    dropped = f" Left out: {_e('; '.join(g.dropped))}." if g.dropped else ""
    intro = (f"<p>The chosen configurations refitted on {g.folds} folds of the {g.rows} training and validation "
             f"rows pooled, each row predicted by the fold model that did not see it; greedy selection on those "
             f"out-of-fold outputs gives the weights. Out-of-fold {_e(s.metric)} of the bagged model "
             f"{_num(g.oof_metrics.get(s.metric))}, in {g.seconds:.0f} s.{dropped}</p>")
    weights = dict(zip(g.trials, g.weights))
    rows = []
    for n, v in (g.oof_values or dict.fromkeys(g.trials, float("nan"))).items():
        t = by_number.get(n)
        cfg = t.config if t is not None else {}
        rows.append([str(n), _e(member_name(t)) if t is not None else "-",
                     *[_e(cfg.get(f"encoder.{m}")) for m in modalities], _num(t.best_value if t is not None else None),
                     _num(v), _num(weights.get(n, 0.0), 2)])
    header = ["trial", "model", *[f"{m} encoder" for m in modalities], s.metric, f"out-of-fold {s.metric}", "weight"]
    return intro + _table(header, rows, numeric={0, len(header) - 3, len(header) - 2, len(header) - 1})


IMPORTANCE_CAPTION = ("How much {metric} drops when an input is taken away from the search's model: "
                      "<b>removal</b> leaves it out as the model reads a missing input; <b>permutation</b> shuffles "
                      "its values across the rows. A positive drop means the model needs the input; bars show "
                      "95% paired bootstrap intervals over the rows, and an interval that covers 0 means the rows "
                      "cannot tell the input from useless. A table's fields count as one input and each on its own.")


def _importance_section(result: SearchResult) -> str:
    """The chart and the figures of which inputs the search's model needs (validation; test beside)."""
    val, test = result.importance or result.test_importance, result.test_importance if result.importance else None
    if val is None:
        return "<p>No importance was computed (no model, or it could not be scored).</p>"
    png = drawing.importance_chart(val, test)
    fig = (f'<div class="fig">{_img(png, "input importance")}<div class="cap">'
           f"{IMPORTANCE_CAPTION.format(metric=_e(val.metric))}</div></div>") if png else ""
    tests = {i.name: i for i in test.inputs} if test is not None else {}
    header = ["input", f"removal ({val.split})", "95% interval", f"permutation ({val.split})", "95% interval",
              *(["removal (test)", "95% interval"] if test is not None else [])]
    rows = []
    for i in val.inputs:
        on_test = [] if test is None else _drop(tests[i.name].removal) if i.name in tests else ["-", "-"]
        rows.append([_e(i.name), *_drop(i.removal), *_drop(i.permutation), *on_test])
    beside = f"; on {test.rows} test rows, beside its {_e(test.metric)} {_num(test.base)}" if test else ""
    intro = (f"<p>Drop in {_e(val.metric)} on {val.rows} {_e(val.split)} rows (with every input: {_num(val.base)})"
             f"{beside}; computed in {val.seconds + (test.seconds if test else 0):.1f} s.</p>")
    return intro + fig + _table(header, rows, numeric=set(range(1, len(header))))


def _drop(d: Any) -> list[str]:
    return [number_text(d.value, "+.4f"), f"[{number_text(d.low, '+.4f')}, {number_text(d.high, '+.4f')}]"]


def render(result: SearchResult, plots: dict[str, bytes], modalities: list[str]) -> str:
    """The report as one HTML string (see the module doc)."""
    s = result.settings
    by_number = {t.number: t for t in result.trials}
    counts = {st: sum(t.status == st for t in result.trials) for st in ("finished", "pruned", "failed")}
    figs = []
    for name in ("metric_by_fusion", "metric_by_encoder", "learning_curves"):
        if name in plots:
            figs.append(f'<div class="fig">{_img(plots[name], name)}<div class="cap">'
                        f"{_e(PLOT_CAPTIONS[name].format(metric=s.metric))}</div></div>")
    b = result.best
    still = ""
    if b is not None and b.best_epoch is not None and b.best_epoch == len(b.history) == b.planned_epochs > 1:
        still = (f"<p>The best trial was still improving at its last epoch ({b.best_epoch}): a longer "
                 "<code>--max-epochs</code> may help.</p>")
    test_parts = [f"<p>Best trial {b.number}: {_metrics_text(result.test_metrics)}</p>" if b is not None else ""]
    if result.ensemble is not None and result.ensemble.kept:
        test_parts.append(f"<p>Ensemble: {_metrics_text(result.ensemble.test_metrics)}</p>")
    if result.bagged is not None:
        test_parts.append(f"<p>Bagged (the search's model): {_metrics_text(result.bagged.test_metrics)}</p>")
    if "confusion_matrix" in plots:
        test_parts.append(f'<div class="fig">{_img(plots["confusion_matrix"], "confusion matrix")}'
                          f'<div class="cap">{_e(PLOT_CAPTIONS["confusion_matrix"])}</div></div>')
    pareto = ""
    if result.pareto:
        pareto = "<h2>Pareto front</h2><p>" + ", ".join(
            f"trial {t.number} ({_num(t.best_value)}, {_num(t.num_params)} params, {_num(t.latency_ms, 1)} ms)"
            for t in result.pareto) + "</p>"
    data = ", ".join(f"{_e(k)} {_e(v)}" for k, v in result.data_summary.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>autofusion search {_e(result.parent_run_id)}</title>
<style>{STYLE}</style></head><body>
<h1>autofusion search {_e(result.experiment)}</h1>
<p class="sub">search run {_e(result.parent_run_id)} · store {_e(result.tracking_uri)} · {len(result.trials)} trials
({counts['finished']} finished, {counts['pruned']} pruned, {counts['failed']} failed) in {result.wall_seconds:.0f} s ·
chosen on {_e(s.metric)} ({_e(s.mode)}) · sampler {_e(s.sampler)}, scheduler {_e(s.scheduler)}, seed {s.seed} ·
written {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>
{_outcome(result)}
<h2>Leaderboard</h2>
{_leaderboard(result, modalities)}
<h2>What the search learned about fusion</h2>
{''.join(figs) or '<p>No trial has a validation value to plot.</p>'}
{still}
<h2>Ensemble</h2>
{_ensemble_section(result, by_number, modalities)}
<h2>Bagging</h2>
{_bagging_section(result, by_number, modalities)}
<h2>Which inputs the model needs</h2>
{_importance_section(result)}
<h2>Test evaluation</h2>
<p class="cap">Each model below was evaluated once on the held-out test split, after it was chosen on validation.</p>
{''.join(test_parts)}
{pareto}
<h2>Data</h2>
<p>{data}</p>
</body></html>
"""


def report_dir(uri: str, fallback: Path) -> Path:
    """Where reports go beside the store: ``<sqlite database's folder>/reports``, or
    ``<file store>/reports``; ``fallback`` for a tracking server."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = unquote(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else ""
        return Path(path).parent / "reports" if path and path != ":memory:" else fallback
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)) / "reports"
    if parsed.scheme == "" and uri:
        return Path(uri) / "reports"
    return fallback


def save_report(uri: str, result: SearchResult, plots: dict[str, bytes], modalities: list[str],
                fallback: Path) -> Path:
    """Writes the report beside the store and logs it with the search's run; returns its path."""
    folder = report_dir(uri, fallback)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"search-{result.parent_run_id}.html"
    path.write_text(render(result, plots, modalities), encoding="utf-8")
    c = client(uri)
    with tempfile.TemporaryDirectory() as tmp:  # logged as report.html
        logged = Path(tmp) / "report.html"
        logged.write_bytes(path.read_bytes())
        retry(lambda: c.log_artifact(result.parent_run_id, str(logged)))
    retry(lambda: c.set_tag(result.parent_run_id, "autofusion.report", str(path.resolve())))
    return path.resolve()

"""What the benchmark prints and writes: each data set's heading and markdown table (test
metrics, the primary metric on the validation rows, wall seconds), the verdict (does the
default search beat the best scikit-learn reference, and a published score where the data set
has one?), and the JSON record of the figures."""

from __future__ import annotations

import math
import shlex
from typing import Any

from .datasets import SPLIT_NAMES_OUT, Dataset
from .metrics import Row, dataset_primary

HEADINGS = {"accuracy": "accuracy", "f1_macro": "macro-F1", "roc_auc": "ROC-AUC", "log_loss": "log loss",
            "r2_log": "R2 (log target)", "r2": "R2", "mape": "MAPE", "mae": "MAE", "rmse": "RMSE"}
FOOTNOTE = ("test (and val) metrics of every method computed here "
            "from its predictions (ROC-AUC and log loss from its class probabilities: scikit-learn's predict_proba, "
            "autofusion predict's prob_<class> columns; ROC-AUC of the second sorted class of two, macro one-vs-rest "
            "of more); val: the same metric on the validation rows, which the search and C are chosen on; "
            "scikit-learn: C picked on val accuracy (imdb: val ROC-AUC), ridge alpha by RidgeCV's leave-one-out "
            "on train; "
            "wall s = feature extraction + fitting + prediction (scikit-learn), the whole `autofusion search` command "
            "(autofusion; `autofusion predict` not included)")


def number(v: float) -> str:
    """Scores with 3 decimals; errors in the target's units (prices) as whole numbers."""
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3f}"


def fmt(row: Row, key: str) -> str:
    """A metric cell: the value, with the spread over repeats in brackets."""
    if key not in row.metrics:
        return "-"
    lo_hi = row.spread.get(key)
    return number(row.metrics[key]) + (f" ({number(lo_hi[0])}-{number(lo_hi[1])})" if lo_hi and len(row.runs) > 1 else "")


def table_keys(ds: Dataset) -> list[str]:
    """The test metrics a data set's table shows, in order."""
    if ds.target == "classification":
        return ["accuracy", "f1_macro", "roc_auc", "log_loss"]
    return [("r2_log" if ds.log_target else "r2"), "mape", "mae", "rmse"]


def table_line(r: Row, keys: list[str], on_val: str) -> str:
    """One method's line: its metrics (or error), the validation metric, seconds and note."""
    if r.error:
        cells = [r.error.replace("|", "/")] + ["-"] * len(keys)
        return f"| {r.method} | " + " | ".join(cells) + f" | {r.seconds:.1f} | |"
    if r.kind == "published":  # a fixed figure: no validation score, nothing timed here
        return f"| {r.method} | " + " | ".join(fmt(r, k) for k in keys) + " | - | - | " + r.note.replace("|", "/") + " |"
    sec = f"{r.seconds:.1f}" + (f" ({r.spread['seconds'][0]:.0f}-{r.spread['seconds'][1]:.0f})"
                                if "seconds" in r.spread else "")
    val = number(r.val[on_val]) if on_val in r.val else "-"
    return f"| {r.method} | " + " | ".join(fmt(r, k) for k in keys) + f" | {val} | {sec} | " + r.note.replace("|", "/") + " |"


def table(ds: Dataset, rows: list[Row]) -> str:
    """The data set's markdown table."""
    keys = table_keys(ds)
    on_val = dataset_primary(ds)[-1]  # macro-F1 (what the search ranks on), R2, or imdb's ROC-AUC
    lines = ["| method | " + " | ".join(HEADINGS[k] for k in keys) + f" | val {HEADINGS[on_val]} | wall s | note |",
             "|---|" + "---|" * (len(keys) + 3)]
    return "\n".join(lines + [table_line(r, keys, on_val) for r in rows])


def judge(k: str, best: Row, search: Row | None) -> tuple[str, dict[str, Any]]:
    """The verdict on one primary metric ``k``: its sentence and its record."""
    ref = best.metrics[k]
    item: dict[str, Any] = {"best_reference": best.method, "reference": ref}
    if search is None:
        item["beats"] = None
        return f"{k}: best scikit-learn reference {ref:.3f} ({best.method}); search not run", item
    if search.error:
        item["beats"] = False
        return f"{k}: NO, the search did not run ({search.error}); best reference {ref:.3f} ({best.method})", item
    v = search.metrics[k]
    lo = search.spread.get(k, (v, v))[0]
    item.update(search=v, search_min=lo, beats=v > ref, beats_every_run=lo > ref)
    word = "YES" if v > ref else "NO"
    return f"{k}: {word}, search {v:.3f} (worst run {lo:.3f}) vs best reference {ref:.3f} ({best.method})", item


def verdict(ds: Dataset, rows: list[Row]) -> tuple[str, dict[str, Any]]:
    """Whether the default search beats the best scikit-learn reference on each primary metric,
    and (a second line) each published score of the data set."""
    refs = [r for r in rows if r.kind == "sklearn" and not r.error]
    search = next((r for r in rows if r.kind == "search"), None)
    out: dict[str, Any] = {}
    parts = []
    for k in dataset_primary(ds) if refs else []:
        best = max(refs, key=lambda r: r.metrics.get(k, -math.inf))
        part, out[k] = judge(k, best, search)
        parts.append(part)
    line = f"Does autofusion's default search beat the best scikit-learn reference on {ds.name}? " + "; ".join(parts)
    published = [judge_published(r, search) for r in rows if r.kind == "published"]
    if published:
        out["published"] = [item for _, item in published]
        line += f"\nDoes autofusion's default search beat the published score on {ds.name}? " \
            + "; ".join(part for part, _ in published)
    return line, out


def judge_published(pub: Row, search: Row | None) -> tuple[str, dict[str, Any]]:
    """The verdict against one published score: the search's mean (over seeds or repeats) on
    each of its metrics, and by how much it falls short where it does."""
    parts, item = [], {"published": pub.method, "scores": dict(pub.metrics)}
    for k, ref in pub.metrics.items():
        if search is None or search.error or k not in search.metrics:
            why = "search not run" if search is None else \
                ("the search did not run (its row says why)" if search.error else f"no {k} from the search")
            parts.append(f"{k}: {pub.method} {ref:.3f}; {why}")
            item[k] = {"beats": None if search is None else False}
            continue
        v, runs = search.metrics[k], len([r for r in search.runs if "metrics" in r])
        mean = f"search {v:.3f}" + (f" (mean of {runs} runs, {search.spread[k][0]:.3f}-{search.spread[k][1]:.3f})"
                                    if runs > 1 else "")
        said = f"YES, {mean} beats it by {v - ref:.3f}" if v > ref else f"NO, {mean} falls short by {ref - v:.3f}"
        parts.append(f"{k}: {said} vs {pub.method} {ref:.3f}")
        item[k] = {"search": v, "published": ref, "beats": v > ref, "margin": v - ref}
    return "; ".join(parts), item


def split_counts(ds: Dataset) -> list[int]:
    """Rows in train, val and test."""
    return [len(ds.idx(c)) for c in range(3)]


def heading(ds: Dataset) -> str:
    """The data set's heading: target, rows, split, manifest, label, roles, CLI arguments."""
    counts = split_counts(ds)
    roles = "; ".join(f"{r}: {', '.join(c)}" for r, c in ds.roles.items())
    return (f"\n### {ds.name} ({ds.target}{', log target' if ds.log_target else ''}; "
            f"{len(ds.df)} rows, train/val/test {counts[0]}/{counts[1]}/{counts[2]} from {ds.split_source})\n\n"
            f"Manifest {ds.manifest}; label {ds.label}; {roles}; autofusion data arguments: "
            f"{shlex.join(ds.cli_args) or '(none)'}\n" + (f"\n{ds.note}\n" if ds.note else ""))


def dataset_record(ds: Dataset, rows: list[Row], judged: dict[str, Any]) -> dict[str, Any]:
    """The data set's figures for ``--json``."""
    return {
        "name": ds.name, "manifest": str(ds.manifest), "target": ds.target, "log_target": ds.log_target,
        "rows": len(ds.df), "split": dict(zip(SPLIT_NAMES_OUT, split_counts(ds))), "split_source": ds.split_source,
        "roles": ds.roles, "label": ds.label, "cli_args": ds.cli_args, "verdict": judged,
        "methods": [{"method": r.method, "kind": r.kind, "metrics": r.metrics, "val_metrics": r.val,
                     "spread": {k: list(v) for k, v in r.spread.items()}, "seconds": r.seconds,
                     "note": r.note, "error": r.error, "runs": r.runs} for r in rows],
    }

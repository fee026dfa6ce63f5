"""The pretrained method: autofusion's default search after ``autofusion weights add`` of the two
real backbones in ``../shared/weights/`` (sentence-transformers/all-MiniLM-L6-v2, a Hugging
Face folder; EfficientNet-Lite0, a timm state dict), as a user with those weights runs it: the
assembled space then offers them (frozen, on features cached once per data set) and each with
its classical encoder on the same input, beside the classical and from-scratch choices, and
the search and its ensemble choose. Each run has its own autofusion home, so each builds the
feature cache once: the runs of one data set share an autofusion home, as one user's searches
do, so the first builds the frozen outputs' cache and the later ones reuse it; the row gives
the first run's feature phase (the search run's ``phase_seconds.features``, inside its wall
time) as the one-off time, and the later runs' as the cost of a search that reuses it.

Its verdict line says whether it beats the best scikit-learn reference and today's default
search (the ``search`` method, no weights) on the seeds' mean of each primary metric.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
from pathlib import Path
from typing import Any, Iterator

from .datasets import Dataset
from .metrics import Row, dataset_primary
from .runs import autofusion_run, neural_row, run_cli

# ../shared/weights beside the repository (REALDATA_WEIGHTS names another folder)
SHARED_WEIGHTS = Path(os.environ.get("REALDATA_WEIGHTS") or Path(__file__).resolve().parents[2].parent / "shared"
                      / "weights")
WEIGHTS = (("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
           ("timm:efficientnet_lite0", "efficientnet_lite0_in1k.pth"))


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set for the block (the CLI runs inherit it)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def features_seconds(store: str, experiment: str) -> float | None:
    """The feature phase of the experiment's search (fitting the extractors and building the
    frozen outputs' cache), from its ``phase_seconds.features`` metric."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=store)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], "tags.`autofusion.kind` = 'search'", max_results=1) if exp else []
    return runs[0].data.metrics.get("phase_seconds.features") if runs else None


def pretrained_method(ds: Dataset, plan: Any) -> list[Row]:
    """The default search with the shelf weights added, once per seed (or ``repeats`` times)."""
    from .methods import run_args, seeds_label

    label = ("autofusion default search after `weights add` of MiniLM-L6 + EfficientNet-Lite0"
             + seeds_label(plan.seeds))
    missing = [n for _, n in WEIGHTS if not (SHARED_WEIGHTS / n).exists()]
    if missing:
        return [Row(label, "pretrained", error=f"no {', '.join(missing)} in {SHARED_WEIGHTS}")]
    with environment(AUTOFUSION_WEIGHTS=str(plan.tmp / "weights")):
        for name, file in WEIGHTS:
            added = run_cli(["weights", "add", name, str(SHARED_WEIGHTS / file)], plan.tmp, plan.timeout)
            if added.rc != 0:
                return [Row(label, "pretrained", error=f"weights add {name}: {added.error_line()}")]
        runs = []
        for i, args in enumerate(run_args(plan.search_args, plan.repeats, plan.seeds)):
            tag = f"pretrained{i + 1}"
            runs.append(autofusion_run(ds, args, plan.tmp, tag, plan.timeout, home="pretrained"))
            runs[-1]["features_seconds"] = features_seconds(f"sqlite:///{plan.tmp / 'mlflow.db'}",
                                                            f"realdata-{ds.name}-{tag}")
    row = neural_row(label, "pretrained", runs)
    cache = [r["features_seconds"] for r in runs if r.get("features_seconds") is not None]
    if cache and not row.error:
        row.note += f"; features: first run (frozen outputs cached) {cache[0]:.0f}s"
        if len(cache) > 1:
            row.note += f", later runs (cache reused) {statistics.mean(cache[1:]):.0f}s"
    return [row]


def pretrained_verdict(ds: Dataset, rows: list[Row]) -> str | None:
    """Whether the search with the shelf weights beats the best scikit-learn reference and today's
    default search on each primary metric (seeds' means); None when it did not run."""
    mine = next((r for r in rows if r.kind == "pretrained" and not r.error), None)
    if mine is None:
        return None
    refs = [r for r in rows if r.kind == "sklearn" and not r.error]
    today = next((r for r in rows if r.kind == "search" and not r.error), None)
    parts = []
    for k in dataset_primary(ds):  # imdb: ROC-AUC
        v = mine.metrics[k]
        said = [f"{k} {v:.3f}"]
        if refs:
            best = max(refs, key=lambda r: r.metrics.get(k, -math.inf))
            said.append(f"{'beats' if v > best.metrics[k] else 'does NOT beat'} the best reference "
                        f"{best.metrics[k]:.3f} ({best.method})")
        if today is not None:
            said.append(f"{'beats' if v > today.metrics[k] else 'does NOT beat'} today's default search "
                        f"{today.metrics[k]:.3f}")
        parts.append(", ".join(said))
    return f"With the shelf weights on {ds.name}: " + "; ".join(parts)

"""How fast a logged model answers, measured as it is served (raw rows in through MLflow's
pyfunc ``predict``, schema check and preprocessing included; file cells as paths), on this
machine, right after the search logs it:

* one row at a time: the median (p50) and 95th percentile (p95) in milliseconds, over up to
  :data:`SINGLE_RUNS` requests (after :data:`WARMUP` uncounted ones), cycling through the rows;
* batches of :data:`BATCH` rows (the rows repeated to fill one), or of fewer where one row
  takes long (what one-row requests say fits in :data:`BATCH_SECONDS`, at least
  :data:`MIN_BATCH`: a bagged model over four photos answers 5 rows a second on 2 cores, and
  256 of them took 46 s): rows per second, the best of up to three batches within the budget.

The figures are tags of the logged model and of the run that holds it (and of the search's
run for its model): ``autofusion promote`` copies them to the registered version, and
``autofusion models`` and the search's report show them. They are what this machine did while
it measured them (a busy machine gives slower figures), not a guarantee.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from autofusion.data.prepare import PreparedData
from autofusion.data.splits import VAL
from autofusion.modelregistry.promotion import logged_model_id
from autofusion.search.records import Latency
from autofusion.serving.explain import split_frame
from autofusion.serving.predict import load_once

SINGLE_RUNS = 30
MIN_RUNS = 5
WARMUP = 2
BATCH = 256
BUDGET_S = 0.5  # seconds each of the two measurements may take, once past their minimum (5 rows, 1 batch)
BATCH_SECONDS = 5.0  # about the most one measured batch takes: fewer rows than BATCH for a slow model
MIN_BATCH = 16

log = logging.getLogger(__name__)


def measure(model: Any, rows: pd.DataFrame, *, batch: int = BATCH, runs: int = SINGLE_RUNS,
            budget_s: float | None = None) -> Latency:
    """The served latency of ``model`` (an MLflow ``PyFuncModel``) on request ``rows``; each
    measurement takes up to ``budget_s`` (default ``BUDGET_S``) once past its minimum."""
    budget_s = BUDGET_S if budget_s is None else budget_s
    rows = rows.reset_index(drop=True)
    n = len(rows)
    one = [rows.iloc[[i % n]].reset_index(drop=True) for i in range(WARMUP + runs)]
    for r in one[:WARMUP]:
        model.predict(r)
    times: list[float] = []
    stop = time.perf_counter() + budget_s
    for r in one[WARMUP:]:
        t = time.perf_counter()
        model.predict(r)
        times.append(time.perf_counter() - t)
        if len(times) >= MIN_RUNS and time.perf_counter() > stop:
            break
    batch = int(min(batch, max(MIN_BATCH, BATCH_SECONDS / max(float(np.median(times)), 1e-9))))
    full = rows.iloc[np.arange(batch) % n].reset_index(drop=True)
    batch_times: list[float] = []
    stop = time.perf_counter() + budget_s
    while len(batch_times) < 3 and (not batch_times or time.perf_counter() < stop):
        t = time.perf_counter()
        model.predict(full)
        batch_times.append(time.perf_counter() - t)
    p50, p95 = np.percentile(np.array(times) * 1000, [50, 95])
    return Latency(p50_ms=float(p50), p95_ms=float(p95), rows_per_s=batch / min(batch_times), batch=batch,
                   runs=len(times))


def search_latency(uri: str, writer: Any, data: PreparedData, best_uri: str | None, best_trial: str | None,
                   final_uri: str | None, loaded: dict[str, Any]) -> dict[str, Latency]:
    """Measures the models a search logged on its validation rows: the best trial's
    (``best_uri``, in trial ``best_trial``'s run) and the search's model (``final_uri``: the
    kept ensemble, in the search's run, or the best trial's again). Tags each logged model and
    the run that holds it, and the search's run with its model's figures; logs the seconds it
    took (``latency_seconds``). A reading aid: a model that cannot be measured is a warning."""
    t0 = time.perf_counter()
    out: dict[str, Latency] = {}
    rows = split_frame(data, data.indices(VAL))
    for model_uri, trial_id in {best_uri: best_trial, final_uri: best_trial if final_uri == best_uri else None}.items():
        if model_uri is None:
            continue
        try:
            model = load_once(uri, model_uri, loaded)
            lat = measure(model, rows)
        except Exception as exc:  # noqa: BLE001 - a reading aid, never a failure
            log.warning("no latency for %s: %s: %s", model_uri, type(exc).__name__, exc)
            continue
        out[model_uri] = lat
        tags = lat.tags()
        if logged_model_id(model_uri):
            writer.tag_model(logged_model_id(model_uri), tags)
        writer.log_metrics(trial_id, {}, tags=tags)
        if model_uri == final_uri and trial_id is not None:
            writer.log_metrics(None, {}, tags=tags)
    if out:
        writer.log_metrics(None, {"latency_seconds": time.perf_counter() - t0})
    writer.flush()
    return out

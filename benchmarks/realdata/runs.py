"""autofusion measured through its CLI, as a user runs it: ``autofusion search`` on a data
set's manifest, ``autofusion predict`` on its validation and test rows, the predictions
scored here; and the table row of one or more such runs (mean, min-max)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .datasets import Dataset, label_str, with_absolute_paths
from .metrics import Row, score


@dataclass
class CliResult:
    """One CLI command: exit status, seconds, output."""

    rc: int
    seconds: float
    out: str
    err: str

    def error_line(self) -> str:
        """The CLI's one-line error (its ``error:`` line, else the last line it wrote)."""
        lines = [ln.strip() for ln in (self.err + "\n" + self.out).splitlines() if ln.strip()]
        flagged = [ln for ln in lines if ln.lower().startswith(("error", "aborted"))]
        line = (flagged or lines or [f"exit status {self.rc}"])[-1]
        return line[:400]


def autofusion_exe() -> str:
    """The installed ``autofusion`` next to this Python (a venv), else the one on PATH."""
    here = Path(sys.executable).parent / "autofusion"
    found = str(here) if here.exists() else shutil.which("autofusion")
    if not found:
        raise SystemExit("the autofusion command is not installed (pip install -e .)")
    return found


def run_cli(args: list[str], cwd: Path, timeout: float, home: Path | None = None) -> CliResult:
    """Runs ``autofusion ARGS`` as a user would; wall seconds of the whole command."""
    env = {**os.environ, "COLUMNS": "250", "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    if home is not None:
        env["AUTOFUSION_HOME"] = str(home)
    t0 = time.perf_counter()
    try:
        p = subprocess.run([autofusion_exe(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        return CliResult(p.returncode, time.perf_counter() - t0, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return CliResult(124, time.perf_counter() - t0, out, f"error: timed out after {timeout:.0f}s")


def known_tasks() -> dict[str, set[str]]:
    """Built-in tasks and their modalities, as ``autofusion spaces list`` prints them (read
    here, not from a subprocess: a second of imports that is no part of any figure)."""
    from autofusion.spaces import builtin_tasks, load_space

    return {t: set(load_space(t).modalities) for t in builtin_tasks()}


def model_uri(res: CliResult, store: str, experiment: str) -> str | None:
    """The best model's URI from the summary (``Model: URI (run ...``), else from the store."""
    m = re.search(r"^Model: (\S+)", res.out, re.M)
    if m:
        return m.group(1)
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=store)
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id], "tags.`autofusion.model_uri` != ''",
                                  order_by=["start_time DESC"], max_results=1) if exp else []
        return runs[0].data.tags["autofusion.model_uri"] if runs else None
    except Exception:  # noqa: BLE001 - the store is only a fallback
        return None


def last_value(args: list[str], flag: str) -> str | None:
    """The value of the last ``flag VALUE`` in ``args`` (click keeps the last one)."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def predictions(ds: Dataset, out: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted labels (or values) from ``autofusion predict``'s output, in row order, and
    for classes their probabilities (its ``prob_<class>`` columns, ``predicted_prob_<class>``
    where the manifest has such a column) in ``ds.classes``' order; None when a class has none."""
    df = pd.read_csv(out)
    new = [c for c in df.columns if c not in ds.df.columns or c.startswith("predicted_")]
    if ds.target == "regression":
        col = next(c for c in ("predicted_prediction", "prediction", "predicted_label", "label") if c in new)
        return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float), None
    col = next(c for c in ("predicted_label", "label") if c in new)
    labels = np.array([label_str(v) for v in df[col]], dtype=object)
    prob = {label_str(_number_or_text(c.removeprefix("predicted_").removeprefix("prob_"))): c
            for c in new if c.removeprefix("predicted_").startswith("prob_")}
    if not set(ds.classes) <= set(prob):
        return labels, None
    return labels, df[[prob[c] for c in ds.classes]].to_numpy(dtype=float)


def _number_or_text(name: str) -> Any:
    """A class name from a column name: a number where it reads as one (``prob_1.0`` is class 1)."""
    try:
        return float(name)
    except ValueError:
        return name


def search_record(ds: Dataset, args: list[str], res: CliResult) -> dict[str, Any]:
    """What one ``autofusion search`` says: its command, seconds, exit status, best trial,
    whether its split sizes are this script's, and its error if it failed."""
    record: dict[str, Any] = {"command": "autofusion " + shlex.join(args), "seconds": res.seconds, "rc": res.rc}
    best = re.search(r"^Best: (.*)$", res.out, re.M)
    if best:
        record["autofusion_says"] = best.group(1).strip()
    sizes = re.search(r"'train': (\d+), 'val': (\d+), 'test': (\d+)", res.out)
    if sizes and [int(v) for v in sizes.groups()] != [len(ds.idx(c)) for c in range(3)]:
        record["split_mismatch"] = "autofusion's train/val/test: " + "/".join(sizes.groups())
    if res.rc != 0:
        record["error"] = ("not supported yet: " if res.rc == 2 else f"failed (exit {res.rc}): ") + res.error_line()
    return record


def predict_and_score(ds: Dataset, record: dict[str, Any], search_args: list[str], uri: str, store: str,
                      tmp: Path, tag: str, timeout: float) -> None:
    """``autofusion predict`` on the validation then test rows; their metrics (or the error)
    and the command's seconds go into ``record``."""
    test_rows = tmp / f"{ds.name}-val-test.csv"  # the validation rows, then the test rows
    if not test_rows.exists():
        with_absolute_paths(ds, ds.df.iloc[np.concatenate([ds.idx(1), ds.idx(2)])]).to_csv(test_rows, index=False)
    out = tmp / f"{ds.name}-{tag}-predictions.csv"
    pargs = ["predict", "--model", uri, "--data", str(test_rows), "--output", str(out), "--tracking-uri", store]
    columns = ",".join(c for c in (last_value(search_args, "--columns") or "").split(",") if not c.startswith("split="))
    if columns:
        pargs += ["--columns", columns]  # the test rows carry no split column
    pred = run_cli(pargs, tmp, timeout)
    record["predict_seconds"] = pred.seconds
    if pred.rc != 0:
        record["error"] = f"predict failed (exit {pred.rc}): " + pred.error_line()
        return
    labels, proba = predictions(ds, out)
    n_val = len(ds.idx(1))
    record["val_metrics"] = score(ds, labels[:n_val], 1, None if proba is None else proba[:n_val])
    record["metrics"] = score(ds, labels[n_val:], 2, None if proba is None else proba[n_val:])


def autofusion_run(ds: Dataset, extra: list[str], tmp: Path, tag: str, timeout: float,
                   home: str | None = None) -> dict[str, Any]:
    """One ``autofusion search`` (+ ``autofusion predict`` on the validation and test rows),
    scored by this script, in autofusion home ``tmp/home-<home or tag>`` (runs that share a
    home share its caches). Returns the run's record: test and validation metrics or error,
    seconds, the model."""
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    experiment = f"realdata-{ds.name}-{tag}"
    args = ["search", "--data", str(ds.manifest), *ds.cli_args, "--tracking-uri", store,
            "--experiment", experiment, "--quiet", *extra]
    res = run_cli(args, tmp, timeout, home=tmp / f"home-{home or tag}")
    record = search_record(ds, args, res)
    if res.rc != 0:
        return record
    uri = model_uri(res, store, experiment)
    if uri is None:
        record["error"] = "no model was logged: " + res.error_line()
        return record
    record["model_uri"] = uri
    predict_and_score(ds, record, args, uri, store, tmp, tag, timeout)
    oof = out_of_fold(store, experiment)
    if oof is not None and "val_metrics" in record:  # a bagged model trained on the validation rows
        if ds.log_target and "r2" in oof:
            oof["r2_log"] = oof["r2"]  # autofusion scores a log target on the log scale
        record["val_metrics"] = {k: oof[k] for k in record["val_metrics"] if k in oof}
        record["val_is_out_of_fold"] = True
    return record


def out_of_fold(store: str, experiment: str) -> dict[str, float] | None:
    """The out-of-fold validation metrics of the search's bagged model (``oof_val_<metric>`` on
    its run), by this script's metric names; None when the search did not bag. A bagged model
    is refitted on the training and validation rows, so its predictions on them are no
    validation figure: its out-of-fold outputs, from the fold models that did not see each
    row, are."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`autofusion.kind` = 'search'",
                              order_by=["start_time DESC"], max_results=1) if exp else []
    if not runs or "autofusion.bagged" not in runs[0].data.tags:
        return None
    return {k.removeprefix("oof_val_"): v for k, v in runs[0].data.metrics.items() if k.startswith("oof_val_")}


def run_note(runs: list[dict[str, Any]], ok: list[dict[str, Any]]) -> str:
    """How many runs gave figures, the first failure, a split mismatch and each best trial."""
    failed = len(runs) - len(ok)
    note = f"{len(ok)} run(s)" + (f", {failed} failed: {runs[[('metrics' in r) for r in runs].index(False)].get('error')}"
                                  if failed else "")
    mismatch = next((r["split_mismatch"] for r in ok if "split_mismatch" in r), None)
    if mismatch:
        note += f"; NOT THE SAME SPLIT: {mismatch}"
    if any(r.get("val_is_out_of_fold") for r in ok):
        note += "; val: out-of-fold (the model is bagged on train + val)"
    best = [re.match(r"trial \d+ \(([^)]*)\)", r.get("autofusion_says", "")) for r in ok]
    if all(best):
        note += "; best trial: " + ", ".join(b.group(1) for b in best)
    return note


def neural_row(name: str, kind: str, runs: list[dict[str, Any]]) -> Row:
    """A row from one or more CLI runs: the mean (min-max) of the metrics, or the error."""
    ok = [r for r in runs if "metrics" in r]
    row = Row(name, kind, runs=runs, seconds=statistics.mean(r["seconds"] for r in runs))
    if not ok:
        row.error = runs[0].get("error", "no result")
        return row
    for k in [k for k in ok[0]["metrics"] if all(k in r["metrics"] for r in ok)]:
        vals = [r["metrics"][k] for r in ok]
        row.metrics[k] = statistics.mean(vals)
        row.spread[k] = (min(vals), max(vals))
    for k in ok[0].get("val_metrics", {}):
        row.val[k] = statistics.mean(r["val_metrics"][k] for r in ok if k in r.get("val_metrics", {}))
    row.seconds = statistics.mean(r["seconds"] for r in ok)
    if len(runs) > 1:
        row.spread["seconds"] = (min(r["seconds"] for r in ok), max(r["seconds"] for r in ok))
    row.note = run_note(runs, ok)
    return row

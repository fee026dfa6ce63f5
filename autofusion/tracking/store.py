"""The MLflow store: which one (flag, environment, the embedded sqlite default), checking it
before any work, a client on it, experiments, retried writes, and finding search runs.

A search is one parent run (tag ``autofusion.kind=search``) with one nested child run per
trial (``mlflow.parentRunId``, ``autofusion.kind=trial``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from autofusion.errors import TrackingError

try:
    import fcntl
except ImportError:  # Windows: no lock (two first searches at once on a new store may clash)
    fcntl = None  # type: ignore[assignment]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
# MLflow prints "View run ..." links on stdout for http stores; the summary says where things are.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "autofusion.kind"


def resolve_tracking_uri(uri: str | None) -> str:
    """The flag, else ``MLFLOW_TRACKING_URI``, else the embedded sqlite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def check_store(uri: str) -> None:
    """Fails fast, with one line, when the store cannot be reached or written."""
    parsed = urlparse(uri)
    lock: Path | None = None
    if parsed.scheme == "sqlite":
        db = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
        if db is None:
            raise TrackingError(f"tracking URI {uri!r}: use sqlite:///PATH/TO/mlflow.db")
        folder = db.parent if str(db.parent) else Path(".")
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise TrackingError(
                f"cannot create the MLflow folder {str(folder)!r}: {str(blocker)!r} is a file, not a folder; "
                "move it away or pass --tracking-uri sqlite:///OTHER/PATH/mlflow.db"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(
                f"cannot create the MLflow folder {str(folder)!r}: {exc.strerror}; fix the permissions of its "
                "parent or pass --tracking-uri sqlite:///OTHER/PATH/mlflow.db"
            ) from None
        if not os.access(folder, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise TrackingError(
                f"the MLflow store {str(db)!r} is not writable; fix its permissions or pass --tracking-uri"
            )
        lock = folder / f"{db.name}.lock"
    elif parsed.scheme in ("http", "https"):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise TrackingError(
                f"tracking server {uri!r} is unreachable ({type(exc).__name__}); start it or pass another --tracking-uri"
            ) from None
    elif parsed.scheme in ("", "file"):
        raise TrackingError(
            f"tracking URI {uri!r}: MLflow's file store is deprecated; use {DEFAULT_TRACKING_URI!r} or a server URL"
        )
    with contextlib.ExitStack() as held:
        if lock is not None and fcntl is not None:
            # The first use creates (or migrates) a sqlite store; two searches started at once
            # would run MLflow's migrations together and one would fail. The lock is released
            # when its file is closed.
            fcntl.flock(held.enter_context(open(lock, "a")), fcntl.LOCK_EX)
        held.enter_context(_quiet_migrations())
        try:
            client(uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any store failure is the user's to fix
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise TrackingError(f"cannot use the MLflow store {uri!r}: {first}") from None


@contextlib.contextmanager
def _quiet_migrations():
    """Creating or migrating a sqlite store logs INFO lines (MLflow's and alembic's) on stderr;
    a failing command must still print one line, and a working one needs none of them."""
    loggers = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def client(uri: str):
    """A client on ``uri``. The global URIs are set too: MLflow's sqlalchemy registry store
    resolves ``models:/m-...`` sources through the global tracking URI, not the client's."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name``, created if needed (restored if deleted; joined if another
    search on the same store creates it between our lookup and our create)."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        try:
            return c.create_experiment(name, artifact_location=_artifact_location(uri, name),
                                       tags={"autofusion.task": name})
        except Exception:  # noqa: BLE001 - another search on this store created it first
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        c.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _artifact_location(uri: str, name: str) -> str | None:
    """For a sqlite store, artifacts go beside the database (MLflow's default is ./mlruns
    of whatever folder the command runs in); servers keep their own default."""
    if not uri.startswith("sqlite:///"):
        return None
    import re

    folder = Path(uri[len("sqlite:///"):]).resolve().parent
    return (folder / "artifacts" / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)).as_uri()


NOT_TRANSIENT = (TypeError, AttributeError, KeyError, IndexError, NameError)  # not worth a second attempt


def retry(fn: Callable[[], Any], *, attempts: int = 8, first_delay: float = 0.5) -> Any:
    """Calls ``fn`` with exponential backoff on any error (locked sqlite, server restarts).

    Eight attempts wait 35.5 s in all (0.5, 1, 2, 4, 8, 10, 10): longer than a tracking
    server takes to restart on a busy two-core machine (measured: 18-27 s).
    """
    delay = first_delay
    for i in range(attempts):
        try:
            return fn()
        except NOT_TRANSIENT:
            raise  # a mistake in what is written: the same on every attempt
        except Exception:  # noqa: BLE001
            if i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def find_child_runs(uri: str, experiment: str, parent_run_id: str) -> list[Any]:
    """Child runs of a search, oldest first."""
    c = client(uri)
    runs = c.search_runs(
        [experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=5000,
        order_by=["attributes.start_time ASC"],
    )
    return list(runs)


def latest_search_run(uri: str, experiment_name: str, *, finished_only: bool = True) -> Any:
    """The newest search (parent) run of an experiment."""
    c = client(uri)
    exp = c.get_experiment_by_name(experiment_name)
    if exp is None:
        raise TrackingError(f"no experiment {experiment_name!r} in {uri}; run a search first")
    flt = f"tags.`{KIND_TAG}` = 'search'"
    if finished_only:
        flt += " and attributes.status = 'FINISHED'"
    runs = c.search_runs([exp.experiment_id], filter_string=flt, max_results=1,
                         order_by=["attributes.start_time DESC"])
    if not runs:
        raise TrackingError(f"no finished search in experiment {experiment_name!r} of {uri}")
    return runs[0]


def get_run(uri: str, run_id: str) -> Any:
    """The run ``run_id``; a missing one is a one-line TrackingError."""
    try:
        return client(uri).get_run(run_id)
    except Exception:  # noqa: BLE001
        raise TrackingError(f"no run {run_id!r} in {uri}") from None

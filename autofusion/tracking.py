"""MLflow tracking: one parent run per search, one nested child run per trial.

The pattern: only the driver writes to MLflow, through one background thread
(:class:`TrackingWriter`) fed by a Ray Tune callback. Trials never open MLflow runs, so
a sqlite store sees exactly one writer per search however many trials run at once, no
metric is lost on a Ray worker, and the training path never waits on a database. Each
write is retried with backoff, so a tracking server that restarts mid-search delays
writes instead of losing them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
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
# The writer thread outlasts a tracking-server restart (15-45 s to come back here).
WRITER_ATTEMPTS = 12
PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "autofusion.kind"
log = logging.getLogger(__name__)


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
        try:
            client(uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any store failure is the user's to fix
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise TrackingError(f"cannot use the MLflow store {uri!r}: {first}") from None


def client(uri: str):
    """A client on ``uri``. The global URIs are set too: MLflow's sqlalchemy registry store
    resolves ``models:/m-...`` sources through the global tracking URI, not the client's."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name``, created if needed (restored if deleted)."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        return c.create_experiment(name, artifact_location=_artifact_location(uri, name),
                                   tags={"autofusion.task": name})
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


def retry(fn: Callable[[], Any], *, attempts: int = 8, first_delay: float = 0.5) -> Any:
    """Calls ``fn`` with exponential backoff on any error (locked sqlite, server restarts).

    Eight attempts wait 35.5 s in all (0.5, 1, 2, 4, 8, 10, 10): longer than a tracking
    server takes to restart on a busy two-core machine (measured: 18-27 s).
    """
    delay = first_delay
    for i in range(attempts):
        try:
            return fn()
        except Exception:  # noqa: BLE001
            if i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


@dataclass
class _ChildState:
    run_id: str | None = None
    steps: set[int] = field(default_factory=set)
    params_logged: bool = False


class TrackingWriter:
    """A single background thread that performs every MLflow write of a search, in order."""

    def __init__(self, uri: str, experiment: str, parent_run_id: str) -> None:
        self.uri = uri
        self.experiment_id = experiment
        self.parent_run_id = parent_run_id
        self.children: dict[str, _ChildState] = {}
        self.errors: list[str] = []
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._client = client(uri)
        self._thread = threading.Thread(target=self._loop, name="autofusion-mlflow", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            try:
                if job is None:
                    return
                retry(job, attempts=WRITER_ATTEMPTS)
            except Exception as exc:  # noqa: BLE001 - recorded, reported in the summary
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                log.warning("MLflow write failed after retries: %s", exc)
            finally:
                self._q.task_done()

    def submit(self, job: Callable[[], None]) -> None:
        self._q.put(job)

    def flush(self) -> None:
        """Blocks until every queued write is done."""
        self._q.join()

    def close(self) -> None:
        self.flush()
        self._q.put(None)
        self._thread.join(timeout=30)

    # --- trial runs -------------------------------------------------------------------
    def adopt(self, trial_id: str, run_id: str, steps: set[int]) -> None:
        """Reuses an existing child run (a resumed search) instead of creating one."""
        self.children[trial_id] = _ChildState(run_id, set(steps), params_logged=True)

    def start_trial(self, trial_id: str, name: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        from mlflow.entities import Param

        def job() -> None:
            st = self.children.setdefault(trial_id, _ChildState())
            if st.run_id is not None and st.params_logged:
                self._client.update_run(st.run_id, status="RUNNING")
                return
            if st.run_id is None:  # a retry after a failed params write reuses the run
                all_tags = {PARENT_TAG: self.parent_run_id, KIND_TAG: "trial", **tags}
                st.run_id = self._client.create_run(self.experiment_id, tags=all_tags, run_name=name).info.run_id
            items = [Param(k, _param_str(v)) for k, v in sorted(params.items())]
            for i in range(0, len(items), 100):
                self._client.log_batch(st.run_id, params=items[i:i + 100])
            st.params_logged = True

        self.submit(job)

    def log_metrics(self, trial_id: str | None, metrics: dict[str, float], step: int | None = None,
                    tags: dict[str, str] | None = None) -> None:
        """Logs to a trial's run (``trial_id``) or to the parent run (None).

        A step already logged for a trial (a resumed trial replaying an epoch) is skipped.
        """
        from mlflow.entities import Metric, RunTag

        ts = int(time.time() * 1000)

        def job() -> None:
            run_id = self.parent_run_id if trial_id is None else self.children[trial_id].run_id
            st = self.children.get(trial_id) if trial_id is not None else None
            if st is not None and step is not None and step in st.steps:
                return
            ms = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if _finite(v)]
            ts_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
            for i in range(0, max(len(ms), 1), 900):
                self._client.log_batch(run_id, metrics=ms[i:i + 900], tags=ts_tags if i == 0 else [])
            if st is not None and step is not None:
                st.steps.add(step)  # only once written, so a retried write is not skipped

        self.submit(job)

    def end_trial(self, trial_id: str, status: str, tags: dict[str, str] | None = None) -> None:
        """Closes a trial's run; ``status`` is finished, pruned or failed."""
        mlflow_status = {"finished": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}[status]

        def job() -> None:
            run_id = self.children[trial_id].run_id
            for k, v in {"autofusion.status": status, **(tags or {})}.items():
                self._client.set_tag(run_id, k, str(v)[:5000])
            self._client.set_terminated(run_id, status=mlflow_status)

        self.submit(job)

    def set_tags(self, trial_id: str, tags: dict[str, str]) -> None:
        def job() -> None:
            run_id = self.children[trial_id].run_id
            for k, v in tags.items():
                self._client.set_tag(run_id, k, str(v)[:5000])

        self.submit(job)

    def run_id(self, trial_id: str) -> str | None:
        self.flush()
        st = self.children.get(trial_id)
        return st.run_id if st else None


def _finite(v: Any) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return f == f and f not in (float("inf"), float("-inf"))


def _param_str(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."


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
    try:
        return client(uri).get_run(run_id)
    except Exception:  # noqa: BLE001
        raise TrackingError(f"no run {run_id!r} in {uri}") from None

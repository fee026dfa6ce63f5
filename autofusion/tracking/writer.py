"""The one thread that writes a search's trials to MLflow.

The pattern: only the driver writes to MLflow, through one background thread
(:class:`TrackingWriter`) fed by a Ray Tune callback. Trials never open MLflow runs, so
a sqlite store sees exactly one writer per search however many trials run at once, no
metric is lost on a Ray worker, and the training path never waits on a database. Each
write is retried with backoff, so a tracking server that restarts mid-search delays
writes instead of losing them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from autofusion.tracking.store import KIND_TAG, PARENT_TAG, client, retry

# The writer thread outlasts a tracking-server restart (15-45 s to come back here).
WRITER_ATTEMPTS = 12
log = logging.getLogger(__name__)


@dataclass
class _ChildState:
    run_id: str | None = None
    steps: set[int] = field(default_factory=set)
    params_logged: bool = False
    inputs_logged: bool = False


class TrackingWriter:
    """A single background thread that performs every MLflow write of a search, in order."""

    def __init__(self, uri: str, experiment: str, parent_run_id: str) -> None:
        self.uri = uri
        self.experiment_id = experiment
        self.parent_run_id = parent_run_id
        self.children: dict[str, _ChildState] = {}
        self.errors: list[str] = []
        self.datasets: list[Any] = []  # the search's dataset inputs (tracking/datasets.py): logged on every trial run
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
            if self.datasets and not st.inputs_logged:  # the data it trained and was validated on (lineage)
                self._client.log_inputs(st.run_id, datasets=list(self.datasets))
                st.inputs_logged = True
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

    def log_file(self, trial_id: str | None, path: str, content: bytes) -> None:
        """Logs ``content`` as artifact ``path`` (``plots/importance.png``) of a trial's run, or of
        the parent run (None)."""
        import tempfile
        from pathlib import Path

        def job() -> None:
            run_id = self.parent_run_id if trial_id is None else self.children[trial_id].run_id
            with tempfile.TemporaryDirectory() as tmp:
                f = Path(tmp) / Path(path).name
                f.write_bytes(content)
                folder = str(Path(path).parent)
                self._client.log_artifact(run_id, str(f), None if folder == "." else folder)

        self.submit(job)

    def tag_model(self, model_id: str, tags: dict[str, str]) -> None:
        """Tags a logged model (MLflow 3's ``LoggedModel``, ``models:/<model_id>``)."""
        self.submit(lambda: self._client.set_logged_model_tags(model_id, tags))

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

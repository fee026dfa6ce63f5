"""MLflow tracking: one parent run per search, one nested child run per trial.

``store`` (the store, its client, retried calls, finding runs) is this package's API and is
re-exported here, so callers write ``tracking.client(uri)``; ``writer`` holds the thread
that performs a search's writes, ``artifacts`` the tables logged at its end, ``plots`` its
plots and ``report`` its one-page HTML report.
Nothing here imports torch, Ray or MLflow until a function needs it.
"""

from __future__ import annotations

from autofusion.tracking.store import (
    DEFAULT_TRACKING_URI,
    KIND_TAG,
    PARENT_TAG,
    check_store,
    client,
    experiment_id,
    find_child_runs,
    get_run,
    latest_search_run,
    resolve_tracking_uri,
    retry,
)

__all__ = [
    "DEFAULT_TRACKING_URI", "KIND_TAG", "PARENT_TAG", "check_store", "client", "experiment_id", "find_child_runs",
    "get_run", "latest_search_run", "resolve_tracking_uri", "retry",
]

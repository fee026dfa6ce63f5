"""autofusion: search multimodal fusion architectures with Ray Tune, Optuna and MLflow."""

from __future__ import annotations

import os
import time

__version__ = "0.1.0"
IMPORTED_AT = time.time()  # when this program first imported autofusion (phases.process_started)

# Quiet, offline-friendly defaults; a user's explicit setting wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow's HTTP retries wait 1, 2, 4, ... s (its factor, an integer, halved from 2): a tracking
# server back after a restart is written to sooner; the writer thread's own retries
# (tracking/writer.py) cover longer outages.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def quiet_libraries(verbose: bool = False) -> None:
    """Keeps Optuna's, MLflow's and Ray's chatter out of the user's terminal unless verbose."""
    import logging
    import warnings

    level = logging.INFO if verbose else logging.ERROR
    try:
        import mlflow  # noqa: F401  (it sets its loggers' levels on import; ours must come after)
    except ImportError:  # pragma: no cover
        pass
    for name in ("mlflow", "optuna", "alembic"):
        logging.getLogger(name).setLevel(level)
    # Tune logs each failed trial's traceback at ERROR; the summary reports failures in one line.
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.CRITICAL)
    if not verbose:
        warnings.filterwarnings("ignore", message=".*is an experimental feature.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        try:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.ERROR)
        except ImportError:  # pragma: no cover
            pass

"""Trial processes that are ready before the trials: a local Ray's idle workers import what a
trial needs while the driver reads the data and builds the features, and Tune's trial actors
start in those workers instead of new processes.

A local Ray starts one idle Python worker per CPU (``num_prestart_python_workers``). Without
this module they hold only Ray, and Tune never uses them: it gives its trial actors a
``runtime_env`` of environment variables (``PL_DISABLE_FORK``, ...), which Ray matches against
each idle worker's, so every trial process is a new one that imports Ray Tune and torch before
its first batch (3-5 s, both cores busy, on the demo search's critical path). Here:

- the local Ray this search starts (:func:`local_system_config`) has its workers import
  :data:`PRELOAD` as they start, and keeps idle ones alive while the driver works;
- the variables Tune would set are set in this process before Ray starts, so every worker
  already has them, and :func:`plain_trial_actors` makes Tune's actors without the
  ``runtime_env``; Ray then hands them the idle, warm workers.

Only for a Ray this process started: a cluster's workers (``--address``) or a Ray someone
else started (a notebook, the tests) did not inherit this process's environment, and keep
Tune's own ``runtime_env``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

# What a trial process imports before its first batch: torch comes with the trainable, and
# torch's first optimizer imports torch._dynamo (0.6 s: ``Optimizer.add_param_group`` is
# wrapped in ``torch._disable_dynamo``, which imports it when first called).
PRELOAD = ("ray.tune", "autofusion.search.trainable", "torch._dynamo")
# Idle workers outlive the driver's data and features: with Ray's default threshold (1 s)
# the raylet stopped the prestarted workers ("idle for a long time") about 10 s after its
# start, in 1 of 3 runs just as Tune asked for them, and Tune's actors got new processes.
IDLE_KEEP_MS = 10 * 60 * 1000

_started_env: dict[str, str] | None = None  # this process's environment when it started Ray


def pays(concurrency: int, cpus: float) -> bool:
    """Whether warm workers pay: a local Ray starts one per CPU (``cpus``), and each holds
    about 300 MB once it has imported torch; only when ``concurrency`` trials at once take
    them all is none held for nothing."""
    return concurrency >= cpus


def local_system_config() -> dict[str, Any]:
    """The ``_system_config`` of a local Ray this process starts, once Tune's variables are set
    here (so that its workers inherit them); remembers the environment they inherit."""
    global _started_env
    for key, value in _tune_env_vars().items():
        os.environ.setdefault(key, value)
    _started_env = dict(os.environ)
    return {"preload_python_modules": list(PRELOAD), "idle_worker_killing_time_threshold_ms": IDLE_KEEP_MS}


def forget_local_start() -> None:
    """Ray stopped: the next Ray may be someone else's."""
    global _started_env
    _started_env = None


def inherited(env_vars: Mapping[str, str]) -> bool:
    """Whether the workers of the Ray this process started already have ``env_vars``."""
    return _started_env is not None and all(_started_env.get(k) == v for k, v in env_vars.items())


@contextlib.contextmanager
def plain_trial_actors() -> Iterator[None]:
    """Tune's trial actors made in the block carry no ``runtime_env`` when its variables are
    :func:`inherited`, so that Ray starts them in idle (warm) workers; Tune's own otherwise."""
    from ray.tune.execution import class_cache

    original = class_cache._ActorClassCache.get

    def get(self: Any, trainable_cls: type) -> Any:
        if not inherited(_tune_env_vars()):
            return original(self, trainable_cls)
        if trainable_cls not in self._cache:
            import ray

            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return self._cache[trainable_cls]

    class_cache._ActorClassCache.get = get
    try:
        yield
    finally:
        class_cache._ActorClassCache.get = original


def _tune_env_vars() -> dict[str, str]:
    """The variables Tune puts in its trial actors' ``runtime_env`` (``_ActorClassCache.get``)."""
    from ray.tune.execution import class_cache

    env = dict(class_cache.DEFAULT_ENV_VARS)
    env.update({k: os.environ[k] for k in class_cache.ENV_VARS_TO_PROPAGATE if k in os.environ})
    return env

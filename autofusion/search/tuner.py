"""One Ray Tune ``Tuner`` over a search's remaining trials: ``OptunaSearch`` (define-by-run
over the space file), an early-stopping scheduler, and the driver-side callback.

Orchestration is kept cheaper than training by design: actors are reused between trials
(``reuse_actors``, and kept while the searcher holds a suggestion back), the prepared arrays are put in Ray's object store once
(``tune.with_parameters``) and read zero-copy by every trial, nothing is decoded inside a
trial, and MLflow writes happen on a driver thread, off the training path.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from ray import tune
from ray.tune.execution import tune_controller
from ray.tune.logger import JsonLoggerCallback
from ray.tune.utils.object_cache import _ObjectCache

from autofusion.search.callback import SearchCallback
from autofusion.search.cluster import GIB
from autofusion.search.context import SearchContext
from autofusion.search.progress import ProgressView
from autofusion.search.searcher import ScheduledOptunaSearch
from autofusion.search.settings import make_sampler, make_scheduler
from autofusion.search.trainable import TrialSettings, run_trial
from autofusion.search.warmworkers import plain_trial_actors
from autofusion.spaces import define_by_run
from autofusion.tracking.writer import TrackingWriter


def run_trials(ctx: SearchContext, writer: TrackingWriter, view: ProgressView, remaining: int) -> bool:
    """Runs up to ``remaining`` trials; returns whether the search was interrupted."""
    s = ctx.settings
    callback = SearchCallback(ctx.parent, s, ctx.data.meta.modalities)
    callback.records = ctx.records
    SearchCallback.attach(ctx.parent, writer, view)
    tuner, searcher = _tuner(ctx, callback, remaining)
    t0 = time.time()
    with view, keeping_idle_actors(s.concurrency), plain_trial_actors():
        tuner.fit()  # SIGTERM arrives as Ctrl-C (driver.py): Tune ends gracefully and saves its state
    searcher.flush()  # results held back to keep the sampler's history in order (searcher.py)
    out_of_time = s.time_budget is not None and time.time() - t0 >= s.time_budget * 0.98
    return ctx.ended() < s.num_trials and not out_of_time


class IdleActors(_ObjectCache):
    """Tune's cache of idle trial actors, holding up to ``keep`` of them while no trial waits
    for one (Tune's own holds one). The searcher holds a suggestion back until an earlier
    trial ends (searcher.py), so a trial often ends with no trial waiting; Tune would stop its
    actor, and the next trial would start a new process and import torch again (4 s, more on
    a busy machine) instead of reusing it (0.1 s)."""

    keep = 1

    def _wanted(self) -> bool:
        return any(v for v in self._max_num_objects.values())

    def cache_object(self, key: Any, obj: Any) -> bool:
        if super().cache_object(key, obj):
            return True
        if self._wanted() or self._num_cached_objects >= self.keep:
            return False
        self._cached_objects[key].append(obj)
        self._num_cached_objects += 1
        return True

    def flush_cached_objects(self, force_all: bool = False) -> Iterator[Any]:
        if force_all or self._wanted() or self._num_cached_objects > self.keep:
            yield from super().flush_cached_objects(force_all=force_all)


@contextlib.contextmanager
def keeping_idle_actors(keep: int) -> Iterator[None]:
    """Tune's trial controllers made in the block keep up to ``keep`` idle actors
    (:class:`IdleActors`); Tune's own cache is back after it."""
    original = tune_controller._ObjectCache
    tune_controller._ObjectCache = type("IdleActors", (IdleActors,), {"keep": max(1, keep)})
    try:
        yield
    finally:
        tune_controller._ObjectCache = original


def _tuner(ctx: SearchContext, callback: SearchCallback, remaining: int) -> tuple[tune.Tuner, ScheduledOptunaSearch]:
    """The Tuner (the searcher and scheduler the settings name, one trainable with the data)
    and its searcher."""
    s, multi = ctx.settings, len(ctx.metrics) > 1
    searcher = ScheduledOptunaSearch(
        space=define_by_run(ctx.space, s.max_epochs), metric=ctx.metrics if multi else s.metric,
        mode=ctx.modes if multi else s.mode,
        sampler=make_sampler(s.sampler, s.seed + len(ctx.records), s.num_trials, multi),
        storage=ctx.storage, study_name=ctx.parent, lag=s.concurrency,
    )
    trainable = tune.with_parameters(
        run_trial, data=ctx.data,
        ts=TrialSettings(ctx.data.meta.modalities, s.max_epochs, s.metric, s.mode, s.seed,
                         max(1, int(s.cpus_per_trial))),
    )
    resources = {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
    if s.memory_per_trial:
        resources["memory"] = int(s.memory_per_trial * GIB)  # bytes, as Ray counts it
    attempt = len(list(ctx.folder.glob("tune-*"))) + 1
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        tune_config=tune.TuneConfig(
            metric=None if multi else s.metric, mode=None if multi else s.mode,
            search_alg=searcher, scheduler=make_scheduler(s.scheduler, s),
            num_samples=remaining, max_concurrent_trials=s.concurrency,
            reuse_actors=True, time_budget_s=s.time_budget,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{attempt}", storage_path=str(ctx.folder), verbose=0,
            callbacks=[callback, JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )
    return tuner, searcher

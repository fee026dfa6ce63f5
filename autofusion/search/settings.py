"""From options to settings: flags over the space file, checked against the data's target
kind once before Ray starts, then fitted to the cluster Ray reports; and the Optuna
sampler and the early-stopping scheduler they name. The records themselves (``SearchOptions``
in, ``Settings`` out) are in ``search/records.py``, the import-light leaf that the CLI, the
tracking and the serving code share without importing this module's space loading."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from autofusion.errors import ConfigError
from autofusion.lazy import LazyImport
from autofusion.metrics import (
    DEFAULT_METRIC,
    EXTRA_OBJECTIVES,
    metric_mode,
    val_metrics,
)
from autofusion.search.records import SAMPLERS, SCHEDULERS, SearchOptions, Settings
from autofusion.spaces.load import Space
from autofusion.spaces.schema import SearchSettings

losses = LazyImport("autofusion.models.losses")  # torch: not before the store check

TREES = True  # the trees member when neither --trees/--no-trees nor search.trees says


def resolve_settings(space: Space, opts: SearchOptions, target: str) -> Settings:
    """Merges flags over the space file; checks metric and mode against the target kind.

    ``concurrency`` stays 0 when neither a flag nor the file sets it: :func:`fit_to_cluster`
    fills it in once Ray says how many CPUs there are.
    """
    s = space.file.search
    metric = opts.metric or s.metric or DEFAULT_METRIC[target][0]
    known = val_metrics(target)
    if metric not in known:
        raise ConfigError(f"unknown metric {metric!r} for {target} targets; known: {', '.join(known)}")
    mode = opts.mode or (s.mode if metric == s.metric else None) or metric_mode(metric)
    objectives = tuple(opts.objectives or s.objectives)
    for o in objectives:
        if o not in EXTRA_OBJECTIVES:
            raise ConfigError(f"unknown objective {o!r}; known: {', '.join(EXTRA_OBJECTIVES)}")
    sampler = opts.sampler or s.sampler
    scheduler = opts.scheduler or s.scheduler
    if sampler == "nsga2" and not objectives:
        objectives = ("num_params",)
    if objectives and scheduler != "fifo":
        scheduler = "fifo"  # early stopping needs a single metric to compare trials on
    cpus, gpus, _ = trial_resources(s, opts)
    num_trials = opts.num_trials or s.num_trials
    concurrency = opts.concurrency or s.concurrency or 0
    return Settings(
        num_trials=num_trials, max_epochs=opts.max_epochs or s.max_epochs,
        concurrency=min(concurrency, num_trials), seed=opts.seed if opts.seed is not None else s.seed,
        sampler=sampler, scheduler=scheduler, metric=metric, mode=mode, objectives=objectives,
        time_budget=opts.time_budget if opts.time_budget is not None else s.time_budget,
        cpus_per_trial=cpus, gpus_per_trial=gpus, grace_period=min(s.grace_period, opts.max_epochs or s.max_epochs),
        memory_per_trial=opts.memory_per_trial, trees=next(v for v in (opts.trees, s.trees, TREES) if v is not None),
        bagging=folds(opts.bagging if opts.bagging is not None else s.bagging),
    )


def folds(value: Any) -> int:
    """``--bagging`` / ``search.bagging`` as a number of folds: -1 for auto (by data size), 0 off."""
    if value == "auto":
        return -1
    try:
        k = int(value)
    except (TypeError, ValueError):
        k = -2
    if k == 1 or k < 0:
        raise ConfigError(f"--bagging is auto, 0 (off) or a number of folds >= 2, but got {value!r}")
    return k


def trial_resources(s: SearchSettings, opts: SearchOptions) -> tuple[float, float, float | None]:
    """The CPUs, GPUs and GiB of memory each trial asks for: flags over ``s``, the space file's
    ``search`` section. It needs no data: a trial no node can hold is found before the data."""
    cpus = opts.cpus_per_trial if opts.cpus_per_trial is not None else s.cpus_per_trial
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else s.gpus_per_trial
    if gpus > 1 and not float(gpus).is_integer():
        raise ConfigError(f"--gpus-per-trial above 1 must be a whole number, but got {gpus}")
    if cpus > 1 and not float(cpus).is_integer():
        raise ConfigError(f"--cpus-per-trial above 1 must be a whole number, but got {cpus}")
    return cpus, gpus, opts.memory_per_trial


def fit_to_cluster(settings: Settings, resources: dict[str, float]) -> Settings:
    """``settings`` on a cluster with ``resources`` (``ray.available_resources()``): as many
    trials at once as its CPUs hold unless told (whether a trial fits a node at all is
    :func:`autofusion.search.cluster.check_trial_resources`'s job)."""
    cpus = float(resources.get("CPU", os.cpu_count() or 1))
    return replace(settings, concurrency=_at_once(settings.concurrency, settings.cpus_per_trial,
                                                  settings.num_trials, cpus))


def planned_concurrency(s: SearchSettings, opts: SearchOptions, cpus: float) -> int:
    """The trials at once that :func:`fit_to_cluster` will settle on where Ray has ``cpus``
    CPUs, from the flags and the space file's ``search`` section ``s`` alone (no data)."""
    return _at_once(opts.concurrency or s.concurrency or 0, trial_resources(s, opts)[0],
                    opts.num_trials or s.num_trials, cpus)


def _at_once(concurrency: int, cpus_per_trial: float, num_trials: int, cpus: float) -> int:
    """``concurrency`` when set, else as many trials as ``cpus`` hold; never above ``num_trials``."""
    concurrency = concurrency or max(1, int(cpus // max(cpus_per_trial, 1e-9)))
    return max(1, min(concurrency, num_trials))


def check_losses_fit(space: Space, target: str) -> None:
    """Every loss the space may pick must fit the data's target kind."""
    for name in space.file.loss.choices:
        if target not in losses.LOSSES.get(name).targets:
            raise ConfigError(
                f"{space.path}: loss.choices.{name}: does not fit the data's {target} targets; "
                f"use one of: {', '.join(losses.losses_for(target))}"
            )


def make_sampler(name: str, seed: int, num_trials: int, multi: bool) -> Any:
    """An Optuna sampler by name, seeded."""
    import optuna

    if name == "tpe":
        startup = min(10, max(3, num_trials // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True,
                                          constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        if multi:
            raise ConfigError("--sampler cmaes searches one objective; use nsga2 or tpe with --objective")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, num_trials // 2)))
    raise ConfigError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def make_scheduler(name: str, settings: Settings) -> Any:
    """A Ray Tune trial scheduler by name; epochs are its time unit, except ASHA's under a
    time budget (see :func:`asha_rungs`)."""
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    if name == "asha":
        attr, max_t, grace = asha_rungs(settings)
        return ASHAScheduler(time_attr=attr, max_t=max_t, grace_period=grace, reduction_factor=2)
    if name == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=settings.max_epochs, reduction_factor=2)
    if name == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=settings.grace_period,
                                  min_samples_required=2)
    if name == "fifo":
        return FIFOScheduler()
    raise ConfigError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")


def asha_rungs(settings: Settings) -> tuple[str, float, float]:
    """ASHA's time unit, longest run and first rung.

    Without a time budget: epochs, ``max_epochs`` and ``grace_period``. With one, seconds of
    training: a trial runs at most its share of the budget (``budget * concurrency /
    num_trials``) and the first rung is an eighth of that, so the rungs (1/8, 1/4, 1/2 of the
    share) follow the budget whatever an epoch costs on this data and machine.
    """
    if settings.time_budget is None:
        return "training_iteration", settings.max_epochs, settings.grace_period
    share = settings.time_budget * max(1, settings.concurrency) / max(1, settings.num_trials)
    return "time_total_s", share, max(1.0, share / 8)

"""The search: a Ray Tune ``Tuner`` with ``OptunaSearch`` (define-by-run over the space
file) and an early-stopping scheduler, feeding a driver-side callback that tracks every
trial in MLflow and draws the progress view.

Orchestration is kept cheaper than training by design: actors are reused between trials
(``reuse_actors``), the prepared arrays are put in Ray's object store once
(``tune.with_parameters``) and read zero-copy by every trial, nothing is decoded inside a
trial, and MLflow writes happen on a driver thread, off the training path.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autofusion import state
from autofusion.cluster import init_ray, probe_address
from autofusion.data.prepare import PreparedData, default_home, prepare_data
from autofusion.errors import ConfigError
from autofusion.metrics import DEFAULT_METRIC, METRICS, metric_mode
from autofusion.spaces import Space, TrialConfig, define_by_run, load_space

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2")
SCHEDULERS = ("asha", "hyperband", "median", "fifo")
EXTRA_OBJECTIVES = {"num_params": "min", "latency_ms": "min"}


@dataclass(frozen=True)
class SearchOptions:
    """What the user asked for; None means "the space file's setting"."""

    task: str | None = None
    space: str | None = None
    data: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    on_bad_rows: str | None = None
    num_trials: int | None = None
    max_epochs: int | None = None
    concurrency: int | None = None
    seed: int | None = None
    sampler: str | None = None
    scheduler: str | None = None
    metric: str | None = None
    mode: str | None = None
    objectives: tuple[str, ...] = ()
    time_budget: float | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    address: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    resume: str | None = None
    warm_start: str | None = None
    home: str | None = None
    demo_samples: int | None = None
    enqueue: tuple[dict[str, Any], ...] = ()  # configurations to run first (benchmarks, reproductions)
    quiet: bool = False
    verbose: bool = False


@dataclass(frozen=True)
class Settings:
    """Resolved search settings: flags over the space file's ``search`` section."""

    num_trials: int
    max_epochs: int
    concurrency: int
    seed: int
    sampler: str
    scheduler: str
    metric: str
    mode: str
    objectives: tuple[str, ...]
    time_budget: float | None
    cpus_per_trial: float
    gpus_per_trial: float
    grace_period: int

    def to_params(self) -> dict[str, Any]:
        d = {f"search.{k}": v for k, v in self.__dict__.items()}
        d["search.objectives"] = ",".join(self.objectives) or "-"
        return d


@dataclass
class TrialRecord:
    """What the driver knows about one trial."""

    trial_id: str
    number: int
    config: dict[str, Any]
    status: str = "pending"
    history: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    planned_epochs: int = 0
    num_params: int | None = None
    latency_ms: float | None = None
    seconds: float = 0.0
    run_id: str | None = None
    checkpoint: str | None = None
    fusion_weights: dict[str, float] = field(default_factory=dict)

    def best_metrics(self) -> dict[str, float]:
        if self.best_epoch is None:
            return {}
        return self.history[self.best_epoch - 1]


@dataclass
class SearchResult:
    parent_run_id: str
    experiment_id: str
    experiment: str
    tracking_uri: str
    settings: Settings
    trials: list[TrialRecord]
    best: TrialRecord | None
    test_metrics: dict[str, float]
    model_uri: str | None
    wall_seconds: float
    data_summary: dict[str, Any]
    pareto: list[TrialRecord] = field(default_factory=list)
    tracking_errors: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    tune_seconds: float = 0.0  # wall time of the trials phase (Tuner.fit)
    first_trial_seconds: float | None = None  # from the command's start to the first trial's start
    default_trial: TrialRecord | None = None  # the trial that ran the hand-built default configuration


def resolve_settings(space: Space, opts: SearchOptions, target: str, cpus_available: float) -> Settings:
    """Merges flags over the space file; checks metric and mode against the target kind."""
    s = space.file.search
    metric = opts.metric or s.metric or DEFAULT_METRIC[target][0]
    known = [f"val_{m}" for m in METRICS[target]]
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
    cpus = opts.cpus_per_trial if opts.cpus_per_trial is not None else s.cpus_per_trial
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else s.gpus_per_trial
    if gpus > 1 and not float(gpus).is_integer():
        raise ConfigError(f"--gpus-per-trial above 1 must be a whole number, but got {gpus}")
    if cpus > 1 and not float(cpus).is_integer():
        raise ConfigError(f"--cpus-per-trial above 1 must be a whole number, but got {cpus}")
    num_trials = opts.num_trials or s.num_trials
    concurrency = opts.concurrency or s.concurrency or max(1, int(cpus_available // max(cpus, 1e-9)))
    return Settings(
        num_trials=num_trials, max_epochs=opts.max_epochs or s.max_epochs,
        concurrency=max(1, min(concurrency, num_trials)), seed=opts.seed if opts.seed is not None else s.seed,
        sampler=sampler, scheduler=scheduler, metric=metric, mode=mode, objectives=objectives,
        time_budget=opts.time_budget if opts.time_budget is not None else s.time_budget,
        cpus_per_trial=cpus, gpus_per_trial=gpus, grace_period=min(s.grace_period, opts.max_epochs or s.max_epochs),
    )


def check_losses_fit(space: Space, target: str) -> None:
    """Every loss the space may pick must fit the data's target kind."""
    from autofusion.models.losses import LOSSES, losses_for

    for name in space.file.loss.choices:
        if target not in LOSSES.get(name).targets:
            raise ConfigError(
                f"{space.path}: loss.choices.{name}: does not fit the data's {target} targets; "
                f"use one of: {', '.join(losses_for(target))}"
            )


def make_sampler(name: str, seed: int, num_trials: int, multi: bool):
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


# What a user would write by hand without a search (the quality benchmark's fixed baseline):
# preferred where the space offers it, else the first choice or the middle of the range.
HAND_BUILT: dict[str, Any] = {
    "fusion.type": "mid", "fusion.weights": "fixed", "optimizer.type": "adamw", "optimizer.lr": 3e-3,
    "optimizer.weight_decay": 1e-4, "lr_schedule.type": "none", "head.hidden": 128, "head.dropout": 0.1,
    "train.batch_size": 32, "train.augment": "none",
}


def default_trial(space: Space, target: str) -> dict[str, Any]:
    """The hand-built configuration of ``space``: every parameter at a sensible default."""
    from autofusion.metrics import DEFAULT_LOSS

    preferred = {**HAND_BUILT, "loss.type": DEFAULT_LOSS[target]}
    return {name: _default_value(d, preferred.get(name)) for name, d in state.space_distributions(space).items()}


def _default_value(d: Any, wanted: Any) -> Any:
    """``wanted`` when the Optuna distribution ``d`` holds it, else its first choice or middle value."""
    import math

    import optuna.distributions as od

    if wanted is not None:
        try:
            if d._contains(d.to_internal_repr(wanted)):
                return wanted
        except (ValueError, TypeError):
            pass
    if isinstance(d, od.CategoricalDistribution):
        return d.choices[0]
    middle = math.sqrt(d.low * d.high) if d.log else (d.low + d.high) / 2  # Optuna: log needs low > 0
    if d.step:
        middle = d.low + round((middle - d.low) / d.step) * d.step
    return round(middle) if isinstance(d, od.IntDistribution) else float(middle)


def first_trials(space: Space, target: str, num_trials: int, seed: int) -> list[dict[str, Any]]:
    """The first trials of a new search: the hand-built default configuration, then each other
    fusion operator once in a seeded order (the sampler fills in their other parameters), up to
    two thirds of the budget.

    With a small budget a model-based sampler otherwise settles on whichever fusion its few
    random start-up trials happened to favour, and can end below the model a user would have
    written by hand; so the search starts from that model, and every fusion point (the choice
    that matters most) gets one look before the sampler narrows down."""
    import random

    default = default_trial(space, target)
    fusions = list(space.file.fusion.choices) if space.file.fusion is not None else []
    others = [f for f in fusions if f != default.get("fusion.type", fusions[0] if fusions else None)]
    random.Random(seed).shuffle(others)
    return [default, *({"fusion.type": f} for f in others)][: max(1, (2 * num_trials) // 3)]


def make_scheduler(name: str, settings: Settings):
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    if name == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=settings.max_epochs,
                             grace_period=settings.grace_period, reduction_factor=2)
    if name == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=settings.max_epochs, reduction_factor=2)
    if name == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=settings.grace_period,
                                  min_samples_required=2)
    if name == "fifo":
        return FIFOScheduler()
    raise ConfigError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")


# --- the trainable (runs inside Ray actors) ------------------------------------------------------


@dataclass(frozen=True)
class TrialSettings:
    modalities: list[str]
    max_epochs: int
    metric: str
    mode: str
    seed: int
    threads: int


def trial_seed(config: dict[str, Any], seed: int) -> int:
    """A seed that depends only on the configuration and the search seed (reproducible)."""
    blob = json.dumps({k: config[k] for k in sorted(config)}, default=str, sort_keys=True)
    return (zlib.crc32(blob.encode()) ^ (seed * 2654435761)) & 0x7FFFFFFF


def run_trial(config: dict[str, Any], data: PreparedData, ts: TrialSettings) -> None:
    """Ray Tune function trainable: builds the model, trains it, reports every epoch.

    A checkpoint (the state dict) is reported only when the validation metric improves,
    so the one Tune keeps is the trial's best epoch.
    """
    import resource

    import torch
    from ray import tune

    from autofusion.models.build import build_model, count_parameters
    from autofusion.train import fit, measure_latency, pick_device

    torch.set_num_threads(ts.threads)
    seed = trial_seed(config, ts.seed)
    torch.manual_seed(seed)
    tc = TrialConfig.from_flat(config, ts.modalities, ts.max_epochs)
    model = build_model(tc, data.meta)
    device = pick_device()
    extra = {"num_params": float(count_parameters(model)), "planned_epochs": float(tc.epochs)}
    best: list[float | None] = [None]

    def on_epoch_end(epoch: int, metrics: dict[str, float], m: Any) -> None:
        if epoch == 1:
            extra["latency_ms"] = measure_latency(m, data, device)
        extra["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        if device.type == "cuda":
            extra["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        weights = m.fusion.fusion_weights() or {}
        out = {**metrics, **extra, **{f"fusion_weight.{k}": v for k, v in weights.items()}}
        value = metrics.get(ts.metric)
        better = value is not None and (best[0] is None or (value > best[0] if ts.mode == "max" else value < best[0]))
        if not better:
            tune.report(out)
            return
        best[0] = value
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(m.state_dict(), os.path.join(tmp, "model.pt"))
            tune.report(out, checkpoint=tune.Checkpoint.from_directory(tmp))

    fit(model, data, tc, device=device, seed=seed, on_epoch_end=on_epoch_end)


# --- the driver ----------------------------------------------------------------------------------


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the search; it can be resumed."""

    def __init__(self, message: str, search_id: str) -> None:
        super().__init__(message)
        self.search_id = search_id


def _resumed_options(opts: SearchOptions, home: Path) -> tuple[SearchOptions, str]:
    """The saved options of the search being resumed; the space text is restored from the
    state so later edits of the file do not change a running search."""
    saved = state.load_options(home, opts.resume)["options"]
    keep = {k: getattr(opts, k) for k in ("quiet", "verbose", "address", "concurrency", "home")
            if getattr(opts, k) not in (None, False)}
    saved.update(keep)
    saved["objectives"] = tuple(saved.get("objectives") or ())
    saved["resume"] = opts.resume
    saved["warm_start"] = None
    space_file = state.state_dir(home, opts.resume) / "space.yaml"
    space_file.write_text(state.load_options(home, opts.resume)["space_text"])
    saved["space"], saved["task"] = str(space_file), None
    return SearchOptions(**saved), opts.resume


def run_search(opts: SearchOptions, *, console: Any = None) -> SearchResult:
    """Runs (or resumes) a whole search and returns what it found; see ``autofusion search --help``.

    Raises:
        SearchInterrupted: Ctrl-C or SIGTERM; finished trials are kept for ``--resume``.
    """
    from autofusion import quiet_libraries, tracking
    from autofusion.data.demo import demo_manifest

    quiet_libraries(opts.verbose)
    t0 = time.time()
    home = Path(opts.home).resolve() if opts.home else default_home()
    resume_id = None
    if opts.resume:
        opts, resume_id = _resumed_options(opts, home)
    uri = tracking.resolve_tracking_uri(opts.tracking_uri)
    tracking.check_store(uri)  # first: it fails fast, before torch is imported
    probe_address(opts.address)
    space = load_space(opts.task, opts.space)
    if resume_id is not None and tracking.get_run(uri, resume_id).info.status == "FINISHED":
        raise ConfigError(f"--resume {resume_id}: that search already finished; promote it or start a new one")
    source_study = _warm_start_study(home, opts.warm_start) if opts.warm_start else None
    manifest = Path(opts.data) if opts.data else demo_manifest(space.task, home, num_samples=opts.demo_samples)
    base_seed = opts.seed if opts.seed is not None else space.file.search.seed
    data = prepare_data(manifest, space, columns=opts.columns, on_bad_rows=opts.on_bad_rows, seed=base_seed, home=home)
    check_losses_fit(space, data.meta.target)
    resolve_settings(space, opts, data.meta.target, float(os.cpu_count() or 1))  # flag errors before Ray starts

    import ray

    started_ray = init_ray(opts.address, opts.verbose)
    quiet_libraries(opts.verbose)  # ray.init configures its loggers anew
    try:
        cpus = float(ray.available_resources().get("CPU", os.cpu_count() or 1))
        settings = resolve_settings(space, opts, data.meta.target, cpus)
        if settings.gpus_per_trial > 0 and ray.available_resources().get("GPU", 0) < settings.gpus_per_trial:
            raise ConfigError(f"--gpus-per-trial {settings.gpus_per_trial}: this Ray cluster has no GPU; leave out "
                              "--gpus-per-trial or pass --address of a cluster with GPUs")
        experiment = opts.experiment or space.task
        exp_id = tracking.experiment_id(uri, experiment)
        if resume_id is None:
            parent = _start_parent(uri, exp_id, space, data, settings, opts)
            state.save_options(state.state_dir(home, parent), opts, space)
            records: dict[str, TrialRecord] = {}
        else:
            parent = resume_id
            exp_id = tracking.get_run(uri, parent).info.experiment_id
            records = state.done_trials(uri, exp_id, parent, settings.metric, settings.mode)
            tracking.client(uri).update_run(parent, status="RUNNING")
        return _drive(opts, space, data, settings, uri, exp_id, experiment, parent, records, home, t0,
                      source_study, console)
    finally:
        if started_ray:
            ray.shutdown()


def _warm_start_study(home: Path, search_id: str) -> Any:
    import optuna

    folder = state.state_dir(home, search_id)
    if not (folder / state.JOURNAL).is_file():
        raise ConfigError(f"--warm-start {search_id}: no Optuna history at {folder / state.JOURNAL}; warm-start "
                          "from a search run in this folder, or set AUTOFUSION_HOME to its .autofusion")
    return optuna.load_study(study_name=search_id, storage=state.journal_storage(folder))


def _drive(opts: SearchOptions, space: Space, data: PreparedData, settings: Settings, uri: str, exp_id: str,
           experiment: str, parent: str, records: dict[str, TrialRecord], home: Path, t0: float,
           source_study: Any, console: Any) -> SearchResult:
    """Runs the trials still to run, then finishes; the parent run ends FINISHED, KILLED
    (interrupted, resumable) or FAILED."""
    import optuna

    from autofusion import tracking
    from autofusion.monitor import ProgressView

    folder = state.state_dir(home, parent)
    storage = state.journal_storage(folder)
    metrics = [settings.metric, *settings.objectives]
    directions = ["maximize" if m == "max" else "minimize"
                  for m in [settings.mode, *(EXTRA_OBJECTIVES[o] for o in settings.objectives)]]
    study = optuna.create_study(study_name=parent, storage=storage, directions=directions, load_if_exists=True)
    state.reconcile_study(study)
    for params in opts.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    if (settings.sampler != "random" and not opts.enqueue and source_study is None
            and not study.get_trials(deepcopy=False)):  # a new search with a model-based sampler
        for params in first_trials(space, data.meta.target, settings.num_trials, settings.seed):
            study.enqueue_trial(params)
    if source_study is not None:
        state.warm_start(study, source_study, space)
    writer = tracking.TrackingWriter(uri, exp_id, parent)
    for rec in records.values():
        writer.adopt(rec.trial_id, rec.run_id, set(range(1, len(rec.history) + 1)))
    view = ProgressView(settings, console=console, quiet=opts.quiet, done_before=len(records))
    status = "FAILED"
    interrupted = False
    try:
        remaining = settings.num_trials - len(records)
        t_fit = time.time()
        if remaining > 0:
            interrupted = _run_trials(space, data, settings, metrics, parent, records, writer, view, storage,
                                      folder, remaining)
        writer.flush()
        if interrupted:
            status = "KILLED"
            done = sum(r.status in ("finished", "pruned", "failed") for r in records.values())
            raise SearchInterrupted(
                f"interrupted after {done} of {settings.num_trials} trials; finished trials are kept. "
                f"Continue with: autofusion search --resume {parent}", parent)
        tune_seconds = time.time() - t_fit
        result = _finish(records, writer, data, settings, uri, exp_id, experiment, parent, t0,
                         optuna.load_study(study_name=parent, storage=storage),
                         default_trial(space, data.meta.target))
        result.tune_seconds = tune_seconds
        result.first_trial_seconds = view.first_start - t0 if view.first_start else None
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise SearchInterrupted(f"interrupted; continue with: autofusion search --resume {parent}", parent) from None
    finally:
        for rec in records.values():
            if rec.status in ("running", "pending") and rec.trial_id in writer.children:
                writer.end_trial(rec.trial_id, "interrupted")
        writer.close()
        tags = {"FINISHED": "finished", "KILLED": "interrupted", "FAILED": "failed"}
        c = tracking.client(uri)
        tracking.retry(lambda: c.set_tag(parent, "autofusion.status", tags[status]))
        tracking.retry(lambda: c.set_terminated(parent, status=status))


def _run_trials(space: Space, data: PreparedData, settings: Settings, metrics: list[str], parent: str,
                records: dict[str, TrialRecord], writer: Any, view: Any, storage: Any, folder: Path,
                remaining: int) -> bool:
    """One Tuner over the remaining trials; returns whether it was interrupted."""
    import signal

    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from autofusion.monitor import SearchCallback
    from autofusion.searcher import ScheduledOptunaSearch

    multi = len(metrics) > 1
    modes = [settings.mode, *(EXTRA_OBJECTIVES[o] for o in settings.objectives)]
    callback = SearchCallback(parent, settings, data.meta.modalities)
    callback.records = records
    SearchCallback.attach(parent, writer, view)
    searcher = ScheduledOptunaSearch(
        space=define_by_run(space, settings.max_epochs), metric=metrics if multi else settings.metric,
        mode=modes if multi else settings.mode,
        sampler=make_sampler(settings.sampler, settings.seed + len(records), settings.num_trials, multi),
        storage=storage, study_name=parent,
    )
    trainable = tune.with_parameters(
        run_trial, data=data,
        ts=TrialSettings(data.meta.modalities, settings.max_epochs, settings.metric, settings.mode,
                         settings.seed, max(1, int(settings.cpus_per_trial))),
    )
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    attempt = len(list(folder.glob("tune-*"))) + 1
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        tune_config=tune.TuneConfig(
            metric=None if multi else settings.metric, mode=None if multi else settings.mode,
            search_alg=searcher, scheduler=make_scheduler(settings.scheduler, settings),
            num_samples=remaining, max_concurrent_trials=settings.concurrency,
            reuse_actors=True, time_budget_s=settings.time_budget,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{attempt}", storage_path=str(folder), verbose=0,
            callbacks=[callback, JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )
    # SIGTERM stops the search like Ctrl-C: Tune ends it gracefully and saves its state.
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.time()
    try:
        with view:
            tuner.fit()
    finally:
        signal.signal(signal.SIGTERM, previous)
    ended = sum(r.status in ("finished", "pruned", "failed") for r in records.values())
    out_of_time = settings.time_budget is not None and time.time() - t0 >= settings.time_budget * 0.98
    return ended < settings.num_trials and not out_of_time


def _start_parent(uri: str, exp_id: str, space: Space, data: PreparedData, settings: Settings,
                  opts: SearchOptions) -> str:
    """Creates the search's parent run with its settings, space file and data summary."""
    from mlflow.entities import Param

    from autofusion import tracking

    c = tracking.client(uri)
    meta = data.meta
    run = c.create_run(exp_id, run_name=f"search-{time.strftime('%Y%m%d-%H%M%S')}", tags={
        tracking.KIND_TAG: "search", "autofusion.task": space.task,
        "autofusion.data_fingerprint": meta.fingerprint, "autofusion.manifest": meta.manifest,
        "autofusion.target": meta.target, "autofusion.status": "running",
    })
    rid = run.info.run_id
    params = {**settings.to_params(), "data.manifest": meta.manifest, "data.fingerprint": meta.fingerprint,
              "data.rows": meta.rows, "data.skipped_rows": meta.skipped, "data.target": meta.target,
              "data.classes": len(meta.classes), "data.split_source": meta.split_source,
              **{f"data.{k}_rows": v for k, v in meta.split_counts.items()},
              "space.file": str(space.path), "space.task": space.task}
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    tracking.retry(lambda: c.log_batch(rid, params=items))
    c.log_text(rid, space.raw_text(), "space.yaml")
    c.log_dict(rid, {"meta": meta.to_json(), "split": data.split.tolist(), "row_ids": data.row_ids.tolist()},
               "data/split.json")
    return rid


def _finish(records: dict[str, TrialRecord], writer: Any, data: PreparedData, settings: Settings, uri: str,
            exp_id: str, experiment: str, parent: str, t0: float, study: Any,
            hand_built: dict[str, Any]) -> SearchResult:
    """Picks the best trial on validation, tests it once, logs its model and the summary."""
    from autofusion import report, tracking
    from autofusion.pyfunc import log_fusion_model

    writer.flush()
    trials = sorted(records.values(), key=lambda r: r.number)
    for t in trials:
        t.run_id = writer.run_id(t.trial_id) or t.run_id
    best = report.best_trial(trials, settings.metric, settings.mode)
    pareto = report.pareto_front(trials, settings) if settings.objectives else []
    test_metrics: dict[str, float] = {}
    model_uri = None
    if best is not None:
        if not best.checkpoint or not (Path(best.checkpoint) / "model.pt").is_file():
            raise ConfigError(f"the best trial's checkpoint is missing ({best.checkpoint})")
        model, tc = _load_trial_model(Path(best.checkpoint), best, data)
        test_metrics, extras = report.test_evaluation(model, data)
        writer.log_metrics(best.trial_id, test_metrics, tags={"autofusion.best": "true"})
        writer.flush()
        model_uri = log_fusion_model(uri, best.run_id, model, tc, data)
        tracking.retry(lambda: tracking.client(uri).set_tag(best.run_id, "autofusion.model_uri", model_uri))
        report.log_best_artifacts(uri, best, data, extras)
    result = SearchResult(
        parent_run_id=parent, experiment_id=exp_id, experiment=experiment, tracking_uri=uri, settings=settings,
        trials=trials, best=best, test_metrics=test_metrics, model_uri=model_uri, wall_seconds=time.time() - t0,
        data_summary={"rows": data.meta.rows, "skipped": data.meta.skipped, **data.meta.split_counts},
        pareto=pareto, tracking_errors=list(writer.errors), modalities=list(data.meta.modalities),
        default_trial=report.matching_trial(trials, hand_built),
    )
    report.log_parent_summary(uri, result, study, data.meta.modalities)
    return result


def _load_trial_model(ckpt: Path, rec: TrialRecord, data: PreparedData):
    import torch

    from autofusion.models.build import build_model

    tc = TrialConfig.from_flat(rec.config, data.meta.modalities)
    tc = replace(tc, epochs=rec.planned_epochs or tc.epochs)
    model = build_model(tc, data.meta)
    model.load_state_dict(torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), tc

"""The search driver: ``run_search`` runs the checks that need no data (each trial's resources
against the cluster, the store, the weights: search/checks.py), reads and checks the data,
starts Ray on a thread of its own while the features are built (and stops it there once
bagging, its last user, is over), opens (or reopens) the search's MLflow run, runs the trials
and finishes: the best trial on validation, its one test evaluation, its logged model, the
greedy ensemble of the trials (kept when it beats the best trial), the summary and the report.
It times each phase (autofusion/phases.py): the summary prints them and the search run logs
them.

Nothing imports this module but the CLI (and benchmarks, tests): the records it takes and
returns are in :mod:`autofusion.search.records`. Ray Tune, torch and MLflow's model code are
imported only once the store, the flags and the data have been checked.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autofusion import quiet_libraries, tracking
from autofusion.data.demo import demo_manifest
from autofusion.data.prepare import prepare_data
from autofusion.errors import ConfigError
from autofusion.home import autofusion_home
from autofusion.lazy import LazyImport
from autofusion.phases import Phases, timing
from autofusion.search import checks, handbuilt, resume, selection
from autofusion.search.cluster import check_trial_resources
from autofusion.search.context import SearchContext
from autofusion.search.features import (
    build_features,
    cache_tags,
    pretrained_params,
    trial_tags,
)
from autofusion.search.progress import ProgressView, say, say_prepared
from autofusion.search.raystart import start_ray, take_early
from autofusion.search.records import (
    EnsembleResult,
    SearchInterrupted,
    SearchOptions,
    SearchResult,
    TrialRecord,
    final_kind,
    final_uri,
)
from autofusion.search.settings import (
    check_losses_fit,
    fit_to_cluster,
    resolve_settings,
)
from autofusion.spaces import load_space, pretrained
from autofusion.spaces.load import with_target
from autofusion.tracking import artifacts, report
from autofusion.tracking.writer import TrackingWriter
from autofusion.train.batches import pick_device

# Imported when first used: Ray Tune, torch and MLflow's pyfunc take seconds to import.
tuner = LazyImport("autofusion.search.tuner")
evaluate = LazyImport("autofusion.search.evaluate")
pyfunc = LazyImport("autofusion.serving.pyfunc")
serving_ensemble = LazyImport("autofusion.serving.ensemble")
serving_trees = LazyImport("autofusion.serving.trees")
trees = LazyImport("autofusion.search.trees")
bagging = LazyImport("autofusion.search.bagging")
ensemble = LazyImport("autofusion.search.ensemble")
noise = LazyImport("autofusion.search.noise")
plots = LazyImport("autofusion.tracking.plots")
explain = LazyImport("autofusion.serving.explain")
served_latency = LazyImport("autofusion.serving.latency")
datasets = LazyImport("autofusion.tracking.datasets")

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
END_TAGS = {"FINISHED": "finished", "KILLED": "interrupted", "FAILED": "failed"}


def run_search(opts: SearchOptions, *, console: Any = None, started: float | None = None) -> SearchResult:
    """Runs (or resumes) a whole search and returns what it found; see ``autofusion search --help``.
    ``started``: when the command started (the CLI passes its process's start), else now; the
    phases and the wall time count from it.

    Raises:
        SearchInterrupted: Ctrl-C or SIGTERM; finished trials are kept for ``--resume``.
    """
    phases = Phases(started)
    with timing(phases):
        result = _run(opts, console, phases)
    _log_phases(result, phases)
    return result


def _run(opts: SearchOptions, console: Any, phases: Phases) -> SearchResult:
    """``run_search`` under ``phases``: the checks, the data, Ray (``autofusion search``'s started
    before the data, ``raystart.start_early``, or one started now), the trials and the end."""
    ray_start = take_early()
    quiet_libraries(opts.verbose)
    t0 = phases.started
    home = Path(opts.home).resolve() if opts.home else autofusion_home()
    resume_id = None
    if opts.resume:
        opts, resume_id = resume.resumed_options(opts, home)
    uri = tracking.resolve_tracking_uri(opts.tracking_uri)
    space = with_target(load_space(opts.task, opts.space), opts.target)
    checks.check_resources(opts, space.file.search)  # Ray not started: a second (probes --address)
    tracking.check_store(uri)  # before torch is imported
    checks.check_weights(space)
    if resume_id is not None and tracking.get_run(uri, resume_id).info.status == "FINISHED":
        raise ConfigError(f"--resume {resume_id}: that search already finished; promote it or start a new one")
    source_study = resume.warm_start_study(home, opts.warm_start) if opts.warm_start else None
    phases.enter("data")
    if not opts.data and not any((home / "demo").glob(f"{space.task}-*/manifest.csv")):
        say(f"Writing the {space.task} demo data set under {home / 'demo'} (the first search on it only)",
            opts.quiet, console)
    manifest = Path(opts.data) if opts.data else demo_manifest(space.task, home, num_samples=opts.demo_samples)
    base_seed = opts.seed if opts.seed is not None else space.file.search.seed
    data = prepare_data(manifest, space, columns=opts.columns, on_bad_rows=opts.on_bad_rows, seed=base_seed,
                        home=home, cuda=pick_device().type == "cuda")  # a GPU allows larger inputs
    check_losses_fit(space, data.meta.target)
    settings = resolve_settings(space, opts, data.meta.target)  # flag errors before Ray starts
    say(f"Data: {data.meta.read_as}", opts.quiet, console)  # before the features, which may take minutes

    import ray

    ray_start = ray_start or start_ray(opts.address, opts.verbose,  # beside the features
                                       lambda cpus: fit_to_cluster(settings, {"CPU": cpus}).concurrency,
                                       settings.gpus_per_trial)
    try:
        phases.enter("features")
        notes = build_features(data, space, home=home, quiet=opts.quiet)
        say_prepared(data.meta.chosen, [*pretrained.summary(space), *notes], opts.quiet, console)
        phases.enter("ray")
        ray_start.result()
        quiet_libraries(opts.verbose)  # ray.init configures its loggers anew
        # Again, on the nodes Ray reports: a trial no node can hold would wait forever.
        check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial, settings.memory_per_trial)
        settings = fit_to_cluster(settings, ray.available_resources())
        phases.enter("logging")
        experiment = opts.experiment or space.task
        ctx = SearchContext(opts=opts, space=space, data=data, settings=settings, uri=uri, experiment=experiment,
                            experiment_id=tracking.experiment_id(uri, experiment), home=home, t0=t0,
                            source_study=source_study, console=console, phases=phases, stop_ray=ray_start.stop)
        if resume_id is None:
            _start_parent(ctx)
        else:
            _reopen_parent(ctx, resume_id)
        return _drive(ctx)
    finally:
        phases.enter("shutdown")
        ray_start.shutdown()  # after a start still under way (the features failed)


def _log_phases(result: SearchResult, phases: Phases) -> None:
    """The seconds of each phase, on the result and as the search run's metrics; the wall time is their sum."""
    result.phases = phases.snapshot()
    result.wall_seconds = sum(result.phases.values())
    try:
        artifacts.log_phases(result.tracking_uri, result.parent_run_id, result.phases)
    except Exception as exc:  # noqa: BLE001 - the search is done; the summary still shows them
        result.tracking_errors.append(f"phase_seconds: {type(exc).__name__}: {exc}")


def _start_parent(ctx: SearchContext) -> None:
    """Creates the search's parent run with its settings, space file and data summary, and
    saves the options for ``--resume``."""
    from mlflow.entities import Param

    c = tracking.client(ctx.uri)
    meta, space = ctx.data.meta, ctx.space
    run = c.create_run(ctx.experiment_id, run_name=f"search-{time.strftime('%Y%m%d-%H%M%S')}", tags={
        tracking.KIND_TAG: "search", "autofusion.task": space.task,
        "autofusion.data_fingerprint": meta.fingerprint, "autofusion.manifest": meta.manifest,
        "autofusion.target": meta.target, "autofusion.status": "running", **cache_tags(meta),
    })
    rid = run.info.run_id
    params = {**ctx.settings.to_params(), "data.manifest": meta.manifest, "data.fingerprint": meta.fingerprint,
              "data.rows": meta.rows, "data.skipped_rows": meta.skipped, "data.target": meta.target,
              "data.classes": len(meta.classes), "data.split_source": meta.split_source,
              **({"data.group": meta.columns["group"][0]} if meta.columns.get("group") else {}),
              **{f"data.{k}_rows": v for k, v in meta.split_counts.items()},
              **{f"prep.{m}.{k}": v for m, p in meta.prep.items() for k, v in p.items()},
              "data.inputs": ",".join(f"{i['name']}:{i['modality']}" for i in meta.inputs),
              "space.file": str(space.path), "space.task": space.task, **pretrained_params(meta)}
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    tracking.retry(lambda: c.log_batch(rid, params=items))
    c.log_text(rid, space.raw_text(), "space.yaml")
    c.log_dict(rid, {"meta": meta.to_json(), "split": ctx.data.split.tolist(), "row_ids": ctx.data.row_ids.tolist()},
               "data/split.json")
    tracking.retry(lambda: c.log_inputs(rid, datasets=datasets.split_inputs(ctx.data)))  # MLflow's Dataset column
    ctx.parent = rid
    resume.save_options(ctx.folder, ctx.opts, space)


def _reopen_parent(ctx: SearchContext, run_id: str) -> None:
    """Continues search ``run_id``: its finished trials are kept, cut-off ones run again."""
    ctx.parent = run_id
    ctx.experiment_id = tracking.get_run(ctx.uri, run_id).info.experiment_id
    ctx.records = resume.done_trials(ctx.uri, ctx.experiment_id, run_id, ctx.settings.metric, ctx.settings.mode)
    tracking.client(ctx.uri).update_run(run_id, status="RUNNING")


def _open_study(ctx: SearchContext) -> None:
    """Creates (or reopens) the search's Optuna study and queues the trials to run first."""
    import optuna

    directions = ["maximize" if m == "max" else "minimize" for m in ctx.modes]
    study = optuna.create_study(study_name=ctx.parent, storage=ctx.storage, directions=directions,
                                load_if_exists=True)
    resume.reconcile_study(study)
    for params in ctx.opts.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    s = ctx.settings
    if (s.sampler != "random" and not ctx.opts.enqueue and ctx.source_study is None
            and not study.get_trials(deepcopy=False)):  # a new search with a model-based sampler
        for params in handbuilt.first_trials(ctx.space, ctx.data.meta.target, s.num_trials, s.seed,
                                             class_counts=ctx.data.meta.class_counts, metric=s.metric):
            study.enqueue_trial(params)
    if ctx.source_study is not None:
        resume.warm_start(study, ctx.source_study, ctx.space)


def _drive(ctx: SearchContext) -> SearchResult:
    """Runs the trials still to run, then finishes; the parent run ends FINISHED, KILLED
    (interrupted, resumable) or FAILED."""
    import optuna

    _open_study(ctx)
    writer = TrackingWriter(ctx.uri, ctx.experiment_id, ctx.parent)
    writer.datasets = datasets.split_inputs(ctx.data)  # each trial's run says which data it saw
    for rec in ctx.records.values():
        writer.adopt(rec.trial_id, rec.run_id, set(range(1, len(rec.history) + 1)))
    view = ProgressView(ctx.settings, console=ctx.console, quiet=ctx.opts.quiet, done_before=len(ctx.records))
    status = "FAILED"
    # SIGTERM stops the search like Ctrl-C, in the trials and after them (Ray's own handler,
    # installed by ray.init, would exit with code 15 and leave the parent run open).
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT)) if main else None
    try:
        remaining = ctx.settings.num_trials - sum(not trees.is_trees(r) for r in ctx.records.values())
        ctx.phases.enter("trials")
        t_fit = time.time()
        interrupted = remaining > 0 and tuner.run_trials(ctx, writer, view, remaining)
        writer.flush()
        if interrupted:
            status = "KILLED"
            raise SearchInterrupted(
                f"interrupted after {ctx.ended()} of {ctx.settings.num_trials} trials; finished trials are kept. "
                f"Continue with: autofusion search --resume {ctx.parent}", ctx.parent)
        tune_seconds = time.time() - t_fit
        if ctx.settings.trees and not ctx.settings.objectives:  # a search for small, fast models wants none
            ctx.phases.enter("trees")
            trees.run_trees(ctx, writer, tune_seconds)
        ctx.phases.enter("logging")
        result = _finish(ctx, writer, optuna.load_study(study_name=ctx.parent, storage=ctx.storage))
        result.tune_seconds = tune_seconds
        result.first_trial_seconds = view.first_start - ctx.t0 if view.first_start else None
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise SearchInterrupted(f"interrupted; continue with: autofusion search --resume {ctx.parent}",
                                ctx.parent) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        ctx.phases.enter("shutdown")
        _close(ctx, writer, status)


def _close(ctx: SearchContext, writer: TrackingWriter, status: str) -> None:
    """Ends the runs of trials still open, drains the writer, and ends the parent run."""
    for rec in ctx.records.values():
        if rec.status in ("running", "pending") and rec.trial_id in writer.children:
            writer.end_trial(rec.trial_id, "interrupted")
    writer.close()
    c = tracking.client(ctx.uri)
    tracking.retry(lambda: c.set_tag(ctx.parent, "autofusion.status", END_TAGS[status]))
    tracking.retry(lambda: c.set_terminated(ctx.parent, status=status))


def _finish(ctx: SearchContext, writer: TrackingWriter, study: Any) -> SearchResult:
    """Picks the best trial on validation, tests it once and logs its model; builds the greedy
    ensemble (tested and logged too when it beats the best trial); logs the summary, the plots
    and the HTML report."""
    s, meta = ctx.settings, ctx.data.meta
    writer.flush()
    trials = sorted(ctx.records.values(), key=lambda r: r.number)
    for t in trials:
        t.run_id = writer.run_id(t.trial_id) or t.run_id
        used = trial_tags(t.config, meta)  # the pretrained weights and preprocessing it used
        if used and t.run_id:
            writer.set_tags(t.trial_id, used)
    best = selection.best_trial(trials, s.metric, s.mode)
    pareto = selection.pareto_front(trials, s) if s.objectives else []
    test_metrics, model_uri, matrix = _log_best(ctx, writer, best) if best is not None else ({}, None, None)
    ens, ens_matrix = None, None
    ctx.phases.enter("ensemble")
    if best is not None and not s.objectives:  # a search for small, fast models wants no ensemble of them
        try:
            ens, ens_matrix = _log_ensemble(ctx, trials, best)
        except Exception as exc:  # noqa: BLE001 - the best trial is the search's model then
            log.warning("no ensemble: %s: %s", type(exc).__name__, exc)
    told = None
    if best is not None:
        try:
            told = noise.validation_noise(trials, best, ctx.data, s, seed=s.seed)
        except Exception as exc:  # noqa: BLE001 - a reading aid, never a failure
            log.warning("no validation-noise estimate: %s: %s", type(exc).__name__, exc)
    bagged, bag_matrix = None, None
    if best is not None:
        ctx.phases.enter("bagging")
        try:
            bagged, bag_matrix = bagging.bag_and_log(ctx, trials, best, ens)
        except Exception as exc:  # noqa: BLE001 - the ensemble or the best trial is the search's model then
            log.warning("no bagging: %s: %s", type(exc).__name__, exc)
    ctx.stop_ray()  # the last step that uses Ray is over: it stops while the search finishes
    ctx.phases.enter("serving")  # the search's model loaded as served: its inputs' importance, its latency
    loaded: dict[str, Any] = {}  # each logged model loaded once, as it is served, for both calls below
    final = final_kind(bagged, ens)
    final_model = final_uri(bagged, ens, model_uri)
    importance = explain.search_importance(ctx.uri, writer, final_model, ctx.data, s, loaded,
                                           on_validation=bagged is None)  # a bagged model trained on them
    latency = served_latency.search_latency(ctx.uri, writer, ctx.data, model_uri, best and best.trial_id,
                                            final_model, loaded)
    ctx.phases.enter("logging")
    result = SearchResult(
        parent_run_id=ctx.parent, experiment_id=ctx.experiment_id, experiment=ctx.experiment, tracking_uri=ctx.uri,
        settings=s, trials=trials, best=best, test_metrics=test_metrics, model_uri=model_uri,
        wall_seconds=time.time() - ctx.t0,
        data_summary={"rows": meta.rows, "skipped": meta.skipped, **meta.split_counts,
                      **({"feature caches": ", ".join(f"{k.split('.', 2)[2]} {v}" for k, v in cache_tags(meta).items())}
                         if cache_tags(meta) else {})},
        pareto=pareto, tracking_errors=list(writer.errors), modalities=list(meta.modalities),
        default_trial=selection.matching_trial(trials, handbuilt.default_trial(
            ctx.space, meta.target, class_counts=meta.class_counts, metric=s.metric)),
        ensemble=ens, noise=told, bagged=bagged, importance=importance[0], test_importance=importance[1], latency=latency,
    )
    drawn = artifacts.log_parent_summary(ctx.uri, result, study, meta.modalities)
    final_matrix = {"bagged": bag_matrix, "ensemble": ens_matrix, "best": matrix}[final]
    if final_matrix is not None:
        drawn["confusion_matrix"] = plots.confusion_matrix(final_matrix, meta.classes)
    try:
        result.report_path = str(report.save_report(ctx.uri, result, drawn, list(meta.modalities), ctx.folder))
    except Exception as exc:  # noqa: BLE001 - the report is a convenience, never a failure
        log.warning("could not write the search's report: %s: %s", type(exc).__name__, exc)
    return result


def _log_best(ctx: SearchContext, writer: TrackingWriter,
              best: TrialRecord) -> tuple[dict[str, float], str, np.ndarray | None]:
    """Evaluates the best trial on test, logs its model and plots; returns its test metrics,
    model URI and test confusion matrix (classification)."""
    if not best.checkpoint or not Path(best.checkpoint).is_dir():
        raise ConfigError(f"the best trial's checkpoint is missing ({best.checkpoint})")
    with ctx.phases.during("test"):
        model, tc = evaluate.load_trial_model(Path(best.checkpoint), best, ctx.data)
        test_metrics, matrix = evaluate.test_evaluation(model, ctx.data)
    writer.log_metrics(best.trial_id, test_metrics, tags={"autofusion.best": "true"})
    writer.flush()
    if trees.is_trees(best):
        model_uri = serving_trees.log_tree_model(ctx.uri, best.run_id, model, ctx.data)
    else:
        model_uri = pyfunc.log_fusion_model(ctx.uri, best.run_id, model, tc, ctx.data)
    tracking.retry(lambda: tracking.client(ctx.uri).set_tag(best.run_id, "autofusion.model_uri", model_uri))
    artifacts.log_best_artifacts(ctx.uri, best, ctx.data.meta.classes, matrix)
    return test_metrics, model_uri, matrix


def _log_ensemble(ctx: SearchContext, trials: list[TrialRecord],
                  best: TrialRecord) -> tuple[EnsembleResult | None, np.ndarray | None]:
    """Greedy ensemble selection over the trials' validation outputs; a kept ensemble (it
    beats the best trial on validation) is evaluated once on test and logged as one pyfunc
    model in the search's run. Returns it (None with fewer than two candidates) and its test
    confusion matrix."""
    choice = ensemble.choose_ensemble(trials, best, ctx.data, ctx.settings)
    if choice is None:
        return None, None
    res = EnsembleResult(
        trials=[t.number for t in choice.members], run_ids=[t.run_id for t in choice.members],
        weights=choice.weights, val_value=choice.value, best_val_value=choice.best_value, kept=choice.kept,
        candidates=choice.candidates, rounds=choice.rounds, val_metrics=choice.val_metrics,
    )
    if not res.kept:
        return res, None
    members = []
    for t, w in zip(choice.members, choice.weights):
        model, tc = evaluate.load_trial_model(Path(t.checkpoint), t, ctx.data)
        members.append(serving_ensemble.Member(model, tc, w, t.number, t.run_id))
    res.test_metrics, matrix = evaluate.ensemble_test_evaluation([m.model for m in members], res.weights, ctx.data)
    res.model_uri = serving_ensemble.log_ensemble_model(ctx.uri, ctx.parent, members, ctx.data)
    return res, matrix

"""The search driver: ``run_search`` checks everything that can fail fast, prepares the
data, starts Ray, opens (or reopens) the search's MLflow run, runs the trials and finishes:
the best trial on validation, its one test evaluation, its logged model, the greedy
ensemble of the trials (kept when it beats the best trial), the summary and the report.

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
from autofusion.cluster import check_trial_resources, init_ray, probe_address
from autofusion.data.demo import demo_manifest
from autofusion.data.prepare import default_home, prepare_data
from autofusion.errors import ConfigError
from autofusion.features import (
    build_features,
    cache_tags,
    pretrained_params,
    trial_tags,
)
from autofusion.lazy import LazyImport
from autofusion.search import handbuilt, resume, selection
from autofusion.search.context import SearchContext
from autofusion.search.progress import ProgressView
from autofusion.search.records import (
    EnsembleResult,
    SearchInterrupted,
    SearchOptions,
    SearchResult,
    TrialRecord,
)
from autofusion.search.settings import (
    check_losses_fit,
    fit_to_cluster,
    resolve_settings,
)
from autofusion.spaces import load_space
from autofusion.tracking import artifacts, report
from autofusion.tracking.writer import TrackingWriter

# Ray Tune's settings, set before Ray starts so that its processes inherit them.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a search never downloads weights (autofusion weights pull does)

# Imported when first used: Ray Tune, torch and MLflow's pyfunc take seconds to import.
tuner = LazyImport("autofusion.search.tuner")
evaluate = LazyImport("autofusion.search.evaluate")
pyfunc = LazyImport("autofusion.serving.pyfunc")
serving_ensemble = LazyImport("autofusion.serving.ensemble")
ensemble = LazyImport("autofusion.search.ensemble")
noise = LazyImport("autofusion.search.noise")
plots = LazyImport("autofusion.tracking.plots")

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
END_TAGS = {"FINISHED": "finished", "KILLED": "interrupted", "FAILED": "failed"}


def run_search(opts: SearchOptions, *, console: Any = None) -> SearchResult:
    """Runs (or resumes) a whole search and returns what it found; see ``autofusion search --help``.

    Raises:
        SearchInterrupted: Ctrl-C or SIGTERM; finished trials are kept for ``--resume``.
    """
    quiet_libraries(opts.verbose)
    t0 = time.time()
    home = Path(opts.home).resolve() if opts.home else default_home()
    resume_id = None
    if opts.resume:
        opts, resume_id = resume.resumed_options(opts, home)
    uri = tracking.resolve_tracking_uri(opts.tracking_uri)
    tracking.check_store(uri)  # first: it fails fast, before torch is imported
    probe_address(opts.address)
    space = load_space(opts.task, opts.space)
    if resume_id is not None and tracking.get_run(uri, resume_id).info.status == "FINISHED":
        raise ConfigError(f"--resume {resume_id}: that search already finished; promote it or start a new one")
    source_study = resume.warm_start_study(home, opts.warm_start) if opts.warm_start else None
    manifest = Path(opts.data) if opts.data else demo_manifest(space.task, home, num_samples=opts.demo_samples)
    base_seed = opts.seed if opts.seed is not None else space.file.search.seed
    data = prepare_data(manifest, space, columns=opts.columns, on_bad_rows=opts.on_bad_rows, seed=base_seed,
                        home=home, cuda=_cuda_visible())
    notes = build_features(data, space, home=home, quiet=opts.quiet)  # missing weights stop it here
    _say_prepared(data.meta.chosen, notes, opts, console)
    check_losses_fit(space, data.meta.target)
    settings = resolve_settings(space, opts, data.meta.target)  # flag errors before Ray starts

    import ray

    started_ray = init_ray(opts.address, opts.verbose)
    quiet_libraries(opts.verbose)  # ray.init configures its loggers anew
    try:
        # Before any MLflow run: a trial no node can hold would wait forever.
        check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial, settings.memory_per_trial)
        settings = fit_to_cluster(settings, ray.available_resources())
        experiment = opts.experiment or space.task
        ctx = SearchContext(opts=opts, space=space, data=data, settings=settings, uri=uri, experiment=experiment,
                            experiment_id=tracking.experiment_id(uri, experiment), home=home, t0=t0,
                            source_study=source_study, console=console)
        if resume_id is None:
            _start_parent(ctx)
        else:
            _reopen_parent(ctx, resume_id)
        return _drive(ctx)
    finally:
        if started_ray:
            ray.shutdown()


def _cuda_visible() -> bool:
    """Whether trials will train on a GPU (it allows larger images and longer texts)."""
    import torch

    return torch.cuda.is_available()


def _say_prepared(chosen: list[str], notes: list[str], opts: SearchOptions, console: Any) -> None:
    """Prints the preprocessing settings chosen from the data and the features built, before
    the trials start (they are logged with the search run too)."""
    if opts.quiet or not (chosen or notes):
        return
    from rich.console import Console

    out = console or Console(stderr=True)
    if chosen:
        out.print("Preprocessing chosen from the training data (set them in the space's modalities to "
                  "change them): " + "; ".join(chosen), highlight=False, soft_wrap=True)
    for note in notes:
        out.print(f"Features: {note}", highlight=False, soft_wrap=True)


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
    for rec in ctx.records.values():
        writer.adopt(rec.trial_id, rec.run_id, set(range(1, len(rec.history) + 1)))
    view = ProgressView(ctx.settings, console=ctx.console, quiet=ctx.opts.quiet, done_before=len(ctx.records))
    status = "FAILED"
    # SIGTERM stops the search like Ctrl-C, in the trials and after them (Ray's own handler,
    # installed by ray.init, would exit with code 15 and leave the parent run open).
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT)) if main else None
    try:
        remaining = ctx.settings.num_trials - len(ctx.records)
        t_fit = time.time()
        interrupted = remaining > 0 and tuner.run_trials(ctx, writer, view, remaining)
        writer.flush()
        if interrupted:
            status = "KILLED"
            raise SearchInterrupted(
                f"interrupted after {ctx.ended()} of {ctx.settings.num_trials} trials; finished trials are kept. "
                f"Continue with: autofusion search --resume {ctx.parent}", ctx.parent)
        tune_seconds = time.time() - t_fit
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
        ensemble=ens, noise=told,
    )
    drawn = artifacts.log_parent_summary(ctx.uri, result, study, meta.modalities)
    final_matrix = ens_matrix if ens is not None and ens.kept else matrix
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
    if not best.checkpoint or not (Path(best.checkpoint) / "model.pt").is_file():
        raise ConfigError(f"the best trial's checkpoint is missing ({best.checkpoint})")
    model, tc = evaluate.load_trial_model(Path(best.checkpoint), best, ctx.data)
    test_metrics, matrix = evaluate.test_evaluation(model, ctx.data)
    writer.log_metrics(best.trial_id, test_metrics, tags={"autofusion.best": "true"})
    writer.flush()
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

"""autofusion search."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from autofusion import tracking
from autofusion.cli.base import ManifestPath, _console, _parse_objectives, _tracking_option
from autofusion.cli.tables import print_summary
from autofusion.lazy import LazyImport
from autofusion.search.records import (
    SAMPLERS,
    SCHEDULERS,
    TARGETS,
    SearchInterrupted,
    SearchOptions,
)

driver = LazyImport("autofusion.search.driver")
checks = LazyImport("autofusion.search.checks")
manifest = LazyImport("autofusion.data.manifest")
auto = LazyImport("autofusion.spaces.auto")
raystart = LazyImport("autofusion.search.raystart")
RESOURCE_FLAGS = ("cpus_per_trial", "gpus_per_trial", "memory_per_trial", "address")


@click.command()
@click.option("--task", default=None, help="Task whose built-in space file to use (image_text, ...).")
@click.option("--space", "space", default=None, type=click.Path(dir_okay=False), help="Your own space file.")
@click.option("--data", default=None, type=ManifestPath(), help="Manifest (CSV/TSV/JSONL/Parquet/Excel .xlsx); default: the demo data.")
@click.option("--columns", default=None, metavar="ROLE=COL,...", help="Column roles, e.g. image=poster,text=plot.")
@click.option("--on-bad-rows", type=click.Choice(["error", "skip"]), default=None, help="What to do with bad rows.")
@click.option("--num-trials", type=click.IntRange(min=1), default=None, help="Trials to run.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=None, help="Epochs per trial at most.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Trials at once (default: CPUs / cpus-per-trial).")
@click.option("--seed", type=int, default=None, help="Seed for the split, the sampler and the trials.")
@click.option("--sampler", type=click.Choice(SAMPLERS), default=None, help="Optuna sampler.")
@click.option("--scheduler", type=click.Choice(SCHEDULERS), default=None, help="Early-stopping scheduler.")
@click.option("--target", type=click.Choice(TARGETS), default=None,
              help="What the label is (default: decided from its values; whole numbers with few values are classes).")
@click.option("--metric", default=None, help="Validation metric to optimise (val_accuracy, val_f1_macro, "
              "val_roc_auc, ...).")
@click.option("--mode", type=click.Choice(["min", "max"]), default=None)
@click.option("--objective", "objectives", default=None, metavar="num_params,latency_ms",
              help="Extra objectives for a multi-objective search (Pareto front).")
@click.option("--trees/--no-trees", default=None, help="After the trials, tune a gradient-boosted trees member "
              "(LightGBM on the tabular fields and the text, image and audio features) and a linear one "
              "(logistic regression or ridge on the same features) for the ensemble "
              "(default: the space's search.trees, on).")
@click.option("--bagging", default=None, metavar="auto|0|K",
              help="Refit the search's model by K-fold bagging on the training and validation rows, weighted on "
                   "out-of-fold outputs (auto: 5 folds up to 1,000 such rows; 0: off).")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, help="Seconds at most.")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--gpus-per-trial", type=click.FloatRange(min=0), default=None, help="Fractions share a GPU, e.g. 0.25.")
@click.option("--memory-per-trial", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GIB",
              help="Memory each trial reserves, in GiB (Ray's memory resource); default: none reserved.")
@click.option("--address", default=None, help="Ray cluster address (ray start --head); default: local Ray.")
@_tracking_option
@click.option("--experiment", default=None, help="MLflow experiment (default: the task name).")
@click.option("--name", default=None, help="Task name of the space assembled from --data alone (names the "
              "experiment and the registered model; default: from the manifest's file or folder name).")
@click.option("--resume", default=None, metavar="SEARCH_RUN_ID", help="Continue an interrupted search.")
@click.option("--warm-start", default=None, metavar="SEARCH_RUN_ID",
              help="Seed the sampler with a previous search's finished trials.")
@click.option("--demo-samples", type=click.IntRange(min=12), default=None, hidden=True,
              help="Size of the demo dataset (tests use a tiny one).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@click.option("--verbose", "-v", is_flag=True, help="Show Ray's logs and tracebacks.")
@click.pass_context
def search(ctx: click.Context, **kw: Any) -> None:
    """Sample fusion architectures, train each as a trial, log everything to MLflow."""
    if kw["verbose"]:
        ctx.obj["verbose"] = True
    if kw["name"] is not None and (kw["task"] or kw["space"] or not kw["data"]):
        raise click.UsageError("--name names the space assembled from --data alone; with --task or --space "
                               "use --experiment (and promote --name)")
    from_data = kw["task"] is None and kw["space"] is None and kw["data"] and not kw["resume"]
    if kw["task"] is None and kw["space"] is None and not from_data:
        kw["task"] = "image_text"
    if not kw["resume"]:  # a resumed search checks what it was started with
        # What needs no data, in about a second, before the driver's imports (torch) and the data:
        # each trial's resources against the cluster (probing --address), then the store.
        search_section = checks.space_search(kw["task"], kw["space"])
        checks.check_resources(SearchOptions(**{k: kw[k] for k in RESOURCE_FLAGS}), search_section)
        tracking.check_store(tracking.resolve_tracking_uri(kw["tracking_uri"]))
    columns = manifest.parse_columns_flag(kw["columns"])
    opts = SearchOptions(
        task=kw["task"], space=kw["space"], data=kw["data"], columns=columns,
        on_bad_rows=kw["on_bad_rows"], num_trials=kw["num_trials"], max_epochs=kw["max_epochs"],
        concurrency=kw["concurrency"], seed=kw["seed"], sampler=kw["sampler"], scheduler=kw["scheduler"],
        target=kw["target"], trees=kw["trees"], bagging=kw["bagging"], metric=kw["metric"], mode=kw["mode"], objectives=_parse_objectives(kw["objectives"]),
        time_budget=kw["time_budget"], cpus_per_trial=kw["cpus_per_trial"], gpus_per_trial=kw["gpus_per_trial"],
        memory_per_trial=kw["memory_per_trial"],
        address=kw["address"], tracking_uri=kw["tracking_uri"], experiment=kw["experiment"],
        resume=kw["resume"], warm_start=kw["warm_start"], demo_samples=kw["demo_samples"], quiet=kw["quiet"], verbose=bool(ctx.obj.get("verbose")),
    )
    if not kw["resume"] and ctx.obj.get("own_process") and raystart.start_early(opts, search_section):
        ctx.obj["exit_now"] = True  # Ray ends with the process, whether the search finishes or stops
    if from_data:  # the space assembled from the data's columns
        opts = replace(opts, space=str(auto.write_auto_space(opts.data, columns, kw["name"], target=kw["target"]).path))
    try:
        result = driver.run_search(opts, started=ctx.obj.get("started"))  # None (in-process callers): from now
    except SearchInterrupted as exc:
        click.echo(str(exc), err=True)
        ctx.exit(130)
    print_summary(result, result.modalities, _console())
    ctx.obj["exit_now"] = True  # main() skips the interpreter's teardown

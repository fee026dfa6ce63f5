"""The ``autofusion`` command line. Each command parses its flags and calls one library
function; a user error prints one line and exits 2 (``--verbose`` shows the traceback)."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from autofusion.errors import AutofusionError

SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2")
SCHEDULERS = ("asha", "hyperband", "median", "fifo")


def _console(stderr: bool = False):
    from rich.console import Console

    c = Console(stderr=stderr)
    if not c.is_terminal:  # logs and pipes: wide enough that tables are not squeezed
        c = Console(stderr=stderr, width=max(c.width, 160))
    return c


class Group(click.Group):
    """Turns AutofusionError into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutofusionError as exc:
            if (ctx.obj or {}).get("verbose") or os.environ.get("AUTOFUSION_VERBOSE"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except click.UsageError as exc:  # a bad flag value: one line, not Click's usage block
            if (ctx.obj or {}).get("verbose") or os.environ.get("AUTOFUSION_VERBOSE"):
                traceback.print_exc()
            hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message().rstrip('.')}{hint}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: one line, details on demand
            if (ctx.obj or {}).get("verbose") or os.environ.get("AUTOFUSION_VERBOSE"):
                traceback.print_exc()
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            click.echo(f"error: {type(exc).__name__}: {first} (run with --verbose for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Show tracebacks and Ray's own logs.")
@click.version_option(package_name="autofusion")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Search multimodal fusion architectures with Ray Tune, Optuna and MLflow."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def _tracking_option(f: Any) -> Any:
    return click.option("--tracking-uri", default=None, metavar="URI",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).")(f)


def _parse_objectives(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


@cli.command()
@click.option("--task", default=None, help="Task whose built-in space file to use (image_text, ...).")
@click.option("--space", "space", default=None, type=click.Path(dir_okay=False), help="Your own space file.")
@click.option("--data", default=None, type=click.Path(), help="Manifest (CSV/JSONL/Parquet); default: the demo data.")
@click.option("--columns", default=None, metavar="ROLE=COL,...", help="Column roles, e.g. image=poster,text=plot.")
@click.option("--on-bad-rows", type=click.Choice(["error", "skip"]), default=None, help="What to do with bad rows.")
@click.option("--num-trials", type=click.IntRange(min=1), default=None, help="Trials to run.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=None, help="Epochs per trial at most.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Trials at once (default: CPUs / cpus-per-trial).")
@click.option("--seed", type=int, default=None, help="Seed for the split, the sampler and the trials.")
@click.option("--sampler", type=click.Choice(SAMPLERS), default=None, help="Optuna sampler.")
@click.option("--scheduler", type=click.Choice(SCHEDULERS), default=None, help="Early-stopping scheduler.")
@click.option("--metric", default=None, help="Validation metric to optimise (val_accuracy, val_f1_macro, ...).")
@click.option("--mode", type=click.Choice(["min", "max"]), default=None)
@click.option("--objective", "objectives", default=None, metavar="num_params,latency_ms",
              help="Extra objectives for a multi-objective search (Pareto front).")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, help="Seconds at most.")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--gpus-per-trial", type=click.FloatRange(min=0), default=None, help="Fractions share a GPU, e.g. 0.25.")
@click.option("--address", default=None, help="Ray cluster address (ray start --head); default: local Ray.")
@_tracking_option
@click.option("--experiment", default=None, help="MLflow experiment (default: the task name).")
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
    from autofusion.data.manifest import parse_columns_flag
    from autofusion.search import SearchOptions, run_search

    if kw["verbose"]:
        ctx.obj["verbose"] = True
    if kw["task"] is None and kw["space"] is None:
        kw["task"] = "image_text"
    opts = SearchOptions(
        task=kw["task"], space=kw["space"], data=kw["data"], columns=parse_columns_flag(kw["columns"]),
        on_bad_rows=kw["on_bad_rows"], num_trials=kw["num_trials"], max_epochs=kw["max_epochs"],
        concurrency=kw["concurrency"], seed=kw["seed"], sampler=kw["sampler"], scheduler=kw["scheduler"],
        metric=kw["metric"], mode=kw["mode"], objectives=_parse_objectives(kw["objectives"]),
        time_budget=kw["time_budget"], cpus_per_trial=kw["cpus_per_trial"], gpus_per_trial=kw["gpus_per_trial"],
        address=kw["address"], tracking_uri=kw["tracking_uri"], experiment=kw["experiment"],
        resume=kw["resume"], warm_start=kw["warm_start"], demo_samples=kw["demo_samples"], quiet=kw["quiet"], verbose=bool(ctx.obj.get("verbose")),
    )
    from autofusion.search import SearchInterrupted

    try:
        result = run_search(opts)
    except SearchInterrupted as exc:
        click.echo(str(exc), err=True)
        ctx.exit(130)
    from autofusion.report import print_summary

    print_summary(result, result.modalities, _console())


@cli.command()
@click.option("--task", default=None, help="Promote the newest finished search of this task.")
@click.option("--search", "search_run", default=None, metavar="RUN_ID", help="Promote this search's best model.")
@click.option("--experiment", default=None, help="Experiment to look in (default: the task name).")
@_tracking_option
@click.option("--name", default=None, help="Registered model name (default: the task).")
@click.option("--alias", default="champion", show_default=True)
@click.option("--metric", default=None, help="Test metric that decides (default: the search's metric on test).")
@click.option("--force", is_flag=True, help="Move the alias even if the new version is not better.")
def promote(task: str | None, search_run: str | None, experiment: str | None, tracking_uri: str | None,
            name: str | None, alias: str, metric: str | None, force: bool) -> None:
    """Register a search's best model and point an alias (champion) at it if it wins."""
    from autofusion import tracking
    from autofusion.registry_ops import promote as do_promote

    if not task and not search_run and not experiment:
        task = "image_text"
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_store(uri)
    p = do_promote(uri, task=task, search=search_run, name=name, alias=alias, metric=metric, force=force,
                   experiment=experiment)
    click.echo(f"registered {p.name} version {p.version} ({p.metric}={p.value:.4f})")
    if p.moved:
        click.echo(f"alias {p.alias!r} -> version {p.version}: {p.reason}")
        click.echo(f"load it with mlflow.pyfunc.load_model('models:/{p.name}@{p.alias}')")
    else:
        click.echo(f"alias {p.alias!r} unchanged: {p.reason}")


@cli.command()
@_tracking_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 127.0.0.1 keeps it local.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--task", default=None, help="Print the link to this task's trials.")
def ui(tracking_uri: str | None, host: str, port: int, task: str | None) -> None:
    """Start the MLflow UI on the store (bound to 127.0.0.1 unless told)."""
    import subprocess

    from autofusion import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_store(uri)
    c = tracking.client(uri)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    exps = [e for e in c.search_experiments() if e.name != "Default" and (task is None or e.name == task)]
    click.echo(f"MLflow UI on http://{shown}:{port} (store {uri}); trials are under 'Model training':")
    for e in exps:
        click.echo(f"  {e.name}: http://{shown}:{port}/#/experiments/{e.experiment_id}/runs?workflowType=machine_learning")
    raise SystemExit(subprocess.call(ui_command(uri, host, port)))


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The MLflow UI command line ``autofusion ui`` runs: bound to ``host`` (127.0.0.1 unless
    told), so the store is not served to the network by default."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


@cli.group(cls=Group)
def spaces() -> None:
    """List, show and validate search-space files."""


@spaces.command("list")
def spaces_list() -> None:
    """The built-in space files, one per task."""
    from autofusion.spaces import builtin_tasks, load_space

    for t in builtin_tasks():
        s = load_space(t)
        click.echo(f"{t:<14} {', '.join(s.modalities):<16} {s.file.description}")


@spaces.command("show")
@click.argument("task")
def spaces_show(task: str) -> None:
    """Print a task's space file (copy it, edit it, pass it with --space)."""
    from autofusion.spaces import resolve_space_path

    click.echo(resolve_space_path(task, None).read_text(encoding="utf-8"), nl=False)


@spaces.command("validate")
@click.argument("file", type=click.Path())
def spaces_validate(file: str) -> None:
    """Check a space file; exit 2 with the first problem."""
    from autofusion.spaces import load_space

    s = load_space(space=file)
    n = sum(len(sec.choices) for sec in s.file.encoders.values())
    click.echo(f"{file}: ok (task {s.task}; modalities {', '.join(s.modalities)}; {n} encoders, "
               f"{len(s.file.fusion.choices)} fusion operators, {len(s.file.loss.choices)} losses, "
               f"{len(s.file.optimizer.choices)} optimizers)")


@cli.group(cls=Group)
def data() -> None:
    """Inspect manifests and write demo datasets."""


@data.command("demo")
@click.argument("task")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--num-samples", type=click.IntRange(min=12), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
def data_demo(task: str, out: str, num_samples: int | None, seed: int) -> None:
    """Write TASK's demo dataset (a manifest and its files) to OUT."""
    from autofusion.data.demo import write_demo

    path = write_demo(task, Path(out), num_samples=num_samples, seed=seed)
    click.echo(f"wrote {path}")


@data.command("inspect")
@click.argument("manifest", type=click.Path())
@click.option("--task", default=None)
@click.option("--space", default=None, type=click.Path(dir_okay=False))
@click.option("--columns", default=None, metavar="ROLE=COL,...")
@click.option("--seed", type=int, default=0)
def data_inspect(manifest: str, task: str | None, space: str | None, columns: str | None, seed: int) -> None:
    """Rows, classes, modalities per row, bad rows and the split of a manifest."""
    from autofusion.data.inspect import inspect_manifest

    inspect_manifest(manifest, task=task, space=space, columns=columns, seed=seed, console=_console())


@cli.command()
@click.option("--task", default=None)
@click.option("--search", "search_run", default=None, metavar="RUN_ID")
@click.option("--experiment", default=None)
@_tracking_option
@click.option("--sort", "sort_by", default=None, help="Column to sort by (default: the search metric).")
def trials(task: str | None, search_run: str | None, experiment: str | None, tracking_uri: str | None,
           sort_by: str | None) -> None:
    """The trials of a search as a table."""
    from autofusion import tracking
    from autofusion.registry_ops import find_search
    from autofusion.views import trials_table

    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_store(uri)
    if not task and not search_run and not experiment:
        task = "image_text"
    parent = find_search(uri, task=task, search=search_run, experiment=experiment)
    _console().print(trials_table(uri, parent, sort_by))


@cli.command()
@_tracking_option
def models(tracking_uri: str | None) -> None:
    """Registered models, their versions, aliases and metrics."""
    from rich.table import Table

    from autofusion import tracking
    from autofusion.registry_ops import list_models

    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_store(uri)
    rows = list_models(uri)
    t = Table(title=f"registered models in {uri}", title_justify="left")
    for col in ("name", "version", "aliases", "metric", "value", "search", "run"):
        t.add_column(col)
    for r in rows:
        t.add_row(*[str(r[c]) for c in ("name", "version", "aliases", "metric", "value", "search", "run")])
    _console().print(t)


@cli.command()
@click.option("--model", "model_uri", required=True, help="e.g. models:/image_text@champion")
@click.option("--data", "manifest", required=True, type=click.Path(), help="Manifest of rows to predict.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="CSV/JSONL/Parquet to write.")
@click.option("--columns", default=None, metavar="ROLE=COL,...")
@_tracking_option
def predict(model_uri: str, manifest: str, output: str, columns: str | None, tracking_uri: str | None) -> None:
    """Predict a manifest's rows with a logged or registered model."""
    from autofusion import tracking
    from autofusion.serving import predict_manifest

    uri = tracking.resolve_tracking_uri(tracking_uri)
    n = predict_manifest(uri, model_uri, manifest, output, columns)
    click.echo(f"wrote {n} predictions to {output}")


def main() -> None:
    """Console entry point."""
    cli(prog_name="autofusion")


if __name__ == "__main__":  # pragma: no cover
    main()

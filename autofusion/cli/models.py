"""Commands on a search's results: promote, models, trials, predict, ui."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from autofusion import modelregistry, tracking
from autofusion.cli.base import ManifestPath, _console, _tracking_option
from autofusion.cli.tables import trials_table
from autofusion.lazy import LazyImport
from autofusion.search.runs import read_trials

prediction = LazyImport("autofusion.serving.predict")  # pandas: only for `autofusion predict`


@click.command()
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
    if not task and not search_run and not experiment:
        task = "image_text"
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_store(uri)
    p = modelregistry.promote(uri, task=task, search=search_run, name=name, alias=alias, metric=metric, force=force,
                   experiment=experiment)
    click.echo(f"registered {p.name} version {p.version} ({p.metric}={p.value:.4f})")
    if p.moved:
        click.echo(f"alias {p.alias!r} -> version {p.version}: {p.reason}")
        click.echo(f"load it with mlflow.pyfunc.load_model('models:/{p.name}@{p.alias}')")
    else:
        click.echo(f"alias {p.alias!r} unchanged: {p.reason}")


@click.command()
@_tracking_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 127.0.0.1 keeps it local.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--task", default=None, help="Print the link to this task's trials.")
def ui(tracking_uri: str | None, host: str, port: int, task: str | None) -> None:
    """Start the MLflow UI on the store (bound to 127.0.0.1 unless told)."""
    import subprocess

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


@click.command()
@click.option("--task", default=None)
@click.option("--search", "search_run", default=None, metavar="RUN_ID")
@click.option("--experiment", default=None)
@_tracking_option
@click.option("--sort", "sort_by", default=None, help="Column to sort by (default: the search metric).")
def trials(task: str | None, search_run: str | None, experiment: str | None, tracking_uri: str | None,
           sort_by: str | None) -> None:
    """The trials of a search as a table."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_store(uri)
    if not task and not search_run and not experiment:
        task = "image_text"
    parent = modelregistry.find_search(uri, task=task, search=search_run, experiment=experiment)
    _console().print(trials_table(parent, read_trials(uri, parent), sort_by))


@click.command()
@_tracking_option
def models(tracking_uri: str | None) -> None:
    """Registered models, their versions, aliases, metrics, served latency and test data."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_store(uri)
    rows = modelregistry.list_models(uri)
    t = Table(title=f"registered models in {uri}", title_justify="left")
    cols = ("name", "version", "aliases", "metric", "value", "p50 ms", "p95 ms", "rows/s", "tested on", "search", "run")
    for col in cols:
        t.add_column(col, justify="right" if col in ("value", "p50 ms", "p95 ms", "rows/s") else "left")
    for r in rows:
        t.add_row(*[str(r[c]) for c in cols])
    _console().print(t)


@click.command()
@click.option("--model", "model_uri", required=True, help="e.g. models:/image_text@champion")
@click.option("--data", "manifest", required=True, type=ManifestPath(), help="Manifest of rows to predict.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="CSV/JSONL/Parquet to write.")
@click.option("--columns", default=None, metavar="ROLE=COL,...")
@_tracking_option
def predict(model_uri: str, manifest: str, output: str, columns: str | None, tracking_uri: str | None) -> None:
    """Predict a manifest's rows with a logged or registered model."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    n = prediction.predict_manifest(uri, model_uri, manifest, output, columns)
    click.echo(f"wrote {n} predictions to {output}")

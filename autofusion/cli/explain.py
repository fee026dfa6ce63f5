"""autofusion explain: which inputs a logged or registered model needs, on a labelled manifest."""

from __future__ import annotations

import click
from rich import box
from rich.table import Table

from autofusion import tracking
from autofusion.cli.base import ManifestPath, _console, _tracking_option
from autofusion.lazy import LazyImport
from autofusion.search.records import Importance

explaining = LazyImport("autofusion.serving.explain")  # torch and MLflow: only when the command runs


@click.command()
@click.option("--model", "model_uri", required=True, help="e.g. models:/image_text@champion, runs:/<run>/model")
@click.option("--data", "manifest", required=True, type=ManifestPath(), help="Labelled manifest to score the model on.")
@click.option("--columns", default=None, metavar="ROLE=COL,...", help="Column roles, e.g. label=price,image=photo.")
@click.option("--metric", default=None, help="Metric whose drop is reported (default: f1_macro for classes, rmse "
              "for numbers: the search's default).")
@click.option("--rows", type=click.IntRange(min=2), default=None, help="Score on this many rows drawn at random "
              "(default: every labelled row).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the permutations and the bootstrap.")
@_tracking_option
def explain(model_uri: str, manifest: str, columns: str | None, metric: str | None, rows: int | None, seed: int,
            tracking_uri: str | None) -> None:
    """Which inputs a model needs: the drop in a metric when each input is removed or permuted."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    imp = explaining.explain_manifest(uri, model_uri, manifest, columns=columns, metric=metric, rows=rows, seed=seed)
    _console().print(importance_table(imp))


def importance_table(imp: Importance) -> Table:
    """One row per input, its name first, then each drop and its 95% interval."""
    t = Table(title=f"drop in {imp.metric} (with every input: {imp.base:.4f}) on {imp.rows} rows of {imp.split}",
              caption="removal: the input left out, as the model reads a missing one; permutation: its values "
                      f"shuffled across the rows; 95% paired bootstrap intervals ({imp.resamples} resamples of the "
                      "rows). An interval that covers 0: the rows cannot tell the input from useless.",
              title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD)
    for col in ("input", "removal", "95% interval", "permutation", "95% interval "):
        t.add_column(col, justify="left" if col == "input" else "right", no_wrap=True)
    for i in imp.inputs:
        t.add_row(i.name, f"{i.removal.value:+.4f}", f"[{i.removal.low:+.4f}, {i.removal.high:+.4f}]",
                  f"{i.permutation.value:+.4f}", f"[{i.permutation.low:+.4f}, {i.permutation.high:+.4f}]")
    return t

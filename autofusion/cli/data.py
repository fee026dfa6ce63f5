"""autofusion data demo|inspect."""

from __future__ import annotations

from pathlib import Path

import click

from autofusion.cli.base import Group, ManifestPath, _console
from autofusion.lazy import LazyImport
from autofusion.search.records import TARGETS

demo = LazyImport("autofusion.data.demo")
inspection = LazyImport("autofusion.data.inspection")


@click.group(cls=Group)
def data() -> None:
    """Inspect manifests and write demo datasets."""


@data.command("demo")
@click.argument("task")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--num-samples", type=click.IntRange(min=12), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
def data_demo(task: str, out: str, num_samples: int | None, seed: int) -> None:
    """Write TASK's demo dataset (a manifest and its files) to OUT."""
    path = demo.write_demo(task, Path(out), num_samples=num_samples, seed=seed)
    click.echo(f"wrote {path}")


@data.command("inspect")
@click.argument("manifest", type=ManifestPath())
@click.option("--task", default=None)
@click.option("--space", default=None, type=click.Path(dir_okay=False))
@click.option("--columns", default=None, metavar="ROLE=COL,...")
@click.option("--seed", type=int, default=0)
@click.option("--target", type=click.Choice(TARGETS), default=None,
              help="What the label is (default: decided from its values).")
def data_inspect(manifest: str, task: str | None, space: str | None, columns: str | None, seed: int,
                 target: str | None) -> None:
    """Rows, classes, modalities per row, bad rows and the split of a manifest (without
    --task or --space: as the space `search --data` assembles from its columns reads it)."""
    inspection.inspect_manifest(manifest, task=task, space=space, columns=columns, seed=seed, console=_console(),
                                target=target)

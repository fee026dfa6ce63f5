"""autofusion spaces list|show|validate."""

from __future__ import annotations

from pathlib import Path

import click

from autofusion.cli.base import Group, ManifestPath
from autofusion.lazy import LazyImport
from autofusion.search.records import TARGETS

space_files = LazyImport("autofusion.spaces")  # pydantic and YAML: not for every command
auto = LazyImport("autofusion.spaces.auto")  # pandas and torch: only for a space assembled from data
manifest = LazyImport("autofusion.data.manifest")
docs = LazyImport("autofusion.spaces.docs")  # imports every component (torch)


@click.group(cls=Group)
def spaces() -> None:
    """List, show and validate search-space files."""


@spaces.command("list")
def spaces_list() -> None:
    """The built-in space files, one per task."""
    for t in space_files.builtin_tasks():
        s = space_files.load_space(t)
        click.echo(f"{t:<14} {', '.join(s.modalities):<16} {s.file.description}")


@spaces.command("show")
@click.argument("task", required=False)
@click.option("--data", default=None, type=ManifestPath(), help="Print the space assembled from this manifest's columns.")
@click.option("--columns", default=None, metavar="ROLE=COL,...", help="Column roles, e.g. label=price,image=front,back.")
@click.option("--name", default=None, help="Task name of the assembled space (default: from the manifest's name).")
@click.option("--target", type=click.Choice(TARGETS), default=None,
              help="What the label is (default: decided from its values).")
def spaces_show(task: str | None, data: str | None, columns: str | None, name: str | None,
                target: str | None) -> None:
    """Print a task's space file, or with --data the space a search would assemble from the
    manifest's modalities (copy it, edit it, pass it with --space)."""
    if (task is None) == (data is None):
        raise click.UsageError("give a TASK or --data MANIFEST (not both)")
    if target is not None and data is None:
        raise click.UsageError("--target applies to the space assembled from --data")
    if data is None:
        click.echo(space_files.resolve_space_path(task, None).read_text(encoding="utf-8"), nl=False)
        return
    text, _ = auto.auto_space_text(data, manifest.parse_columns_flag(columns), name, target)
    click.echo(text, nl=False)


@spaces.command("validate")
@click.argument("file", type=click.Path())
def spaces_validate(file: str) -> None:
    """Check a space file; exit 2 with the first problem."""
    s = space_files.load_space(space=file)
    n = sum(len(sec.choices) for sec in s.file.encoders.values())
    click.echo(f"{file}: ok (task {s.task}; modalities {', '.join(s.modalities)}; {n} encoders, "
               f"{len(s.file.fusion.choices)} fusion operators, {len(s.file.loss.choices)} losses, "
               f"{len(s.file.optimizer.choices)} optimizers)")


@spaces.command("components")
@click.option("--write", "write", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Rewrite the generated block of this markdown file instead of printing.")
def spaces_components(write: str | None) -> None:
    """Tables of every encoder, fusion operator, loss, optimizer and schedule with their
    parameters, defaults and ranges (generated from the registries)."""
    if write is None:
        click.echo(docs.component_tables(), nl=False)
        return
    try:
        changed = docs.write_tables(Path(write))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{write}: {'updated' if changed else 'already current'}")

"""autofusion spaces list|show|validate."""

from __future__ import annotations

import click

from autofusion.cli.base import Group


@click.group(cls=Group)
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

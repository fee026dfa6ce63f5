"""What every command shares: the error-to-one-line group, the console, shared options."""

from __future__ import annotations

import os
import traceback
from typing import Any

import click

from autofusion.errors import AutofusionError


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


def _tracking_option(f: Any) -> Any:
    return click.option("--tracking-uri", default=None, metavar="URI",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).")(f)


def _parse_objectives(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


class ManifestPath(click.Path):
    """A manifest's path; a folder holding one manifest (``--data houses/``) is that file:
    the one CSV/TSV/JSONL/JSON/Parquet/.xlsx file in it (compressed too), else its
    ``manifest.*`` or ``metadata.*`` among several."""

    name = "manifest"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from pathlib import Path

        from autofusion.data.reading import format_of

        path = Path(super().convert(value, param, ctx))
        if not path.is_dir():
            return str(path)
        try:
            found = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                           and format_of(f) is not None)
        except AutofusionError as exc:  # a .zip that holds several files: not a manifest
            self.fail(str(exc), param, ctx)
        named = [f for f in found if f.name.split(".")[0].lower() in ("manifest", "metadata")]
        if len(found) == 1 or len(named) == 1:
            return str((found if len(found) == 1 else named)[0])
        if not found:
            self.fail(f"{str(path)!r} is a folder with no manifest in it (CSV/TSV/JSONL/JSON/Parquet/.xlsx); "
                      "give the manifest's path", param, ctx)
        shown = ", ".join(f.name for f in found[:5]) + (" ..." if len(found) > 5 else "")
        self.fail(f"{str(path)!r} is a folder with {len(found)} manifests ({shown}); give the one to use", param, ctx)

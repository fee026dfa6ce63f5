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

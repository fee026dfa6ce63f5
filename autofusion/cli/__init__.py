"""The ``autofusion`` command line. Each command parses its flags and calls one library
function; a user error prints one line and exits 2 (``--verbose`` shows the traceback).

Commands live in one module per group (``search``, ``models``, ``spaces``, ``data``); this
module assembles them under the root group."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import click

from autofusion.cli.base import Group
from autofusion.cli.data import data
from autofusion.cli.doctor import doctor
from autofusion.cli.explain import explain
from autofusion.cli.models import models, predict, promote, trials, ui, ui_command
from autofusion.cli.search import search
from autofusion.cli.spaces import spaces
from autofusion.cli.weights import weights
from autofusion.phases import process_started


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Show tracebacks and Ray's own logs.")
@click.version_option(package_name="autofusion")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Search multimodal fusion architectures with Ray Tune, Optuna and MLflow."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


for _command in (search, promote, ui, spaces, data, trials, models, predict, explain, doctor, weights):
    cli.add_command(_command)


def main() -> None:
    """Console entry point. A command that marks ``exit_now`` (a finished search) ends its
    process with :func:`exit_now`."""
    # a search's phases count from the process's start; a search in a process of its own may
    # start Ray before it reads the data (search/raystart.py, start_early)
    obj: dict = {"started": process_started(), "own_process": True}
    try:
        cli(prog_name="autofusion", obj=obj)
    except SystemExit as exc:
        if not obj.get("exit_now"):
            raise
        exit_now(exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1)


def exit_now(code: int = 0) -> NoReturn:
    """Ends the process without the interpreter's teardown, which takes 1-4 s once torch and
    MLflow are imported (measured: freeing their modules); for a finished search, which has
    nothing left to flush (MLflow written, Ray stopped, the summary printed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


__all__ = ["cli", "exit_now", "main", "ui_command"]

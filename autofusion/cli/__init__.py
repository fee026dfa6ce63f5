"""The ``autofusion`` command line. Each command parses its flags and calls one library
function; a user error prints one line and exits 2 (``--verbose`` shows the traceback).

Commands live in one module per group (``search``, ``models``, ``spaces``, ``data``); this
module assembles them under the root group."""

from __future__ import annotations

import click

from autofusion.cli.base import Group
from autofusion.cli.data import data
from autofusion.cli.doctor import doctor
from autofusion.cli.models import models, predict, promote, trials, ui, ui_command
from autofusion.cli.search import search
from autofusion.cli.spaces import spaces
from autofusion.cli.weights import weights


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Show tracebacks and Ray's own logs.")
@click.version_option(package_name="autofusion")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Search multimodal fusion architectures with Ray Tune, Optuna and MLflow."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


for _command in (search, promote, ui, spaces, data, trials, models, predict, doctor, weights):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    cli(prog_name="autofusion")


__all__ = ["cli", "main", "ui_command"]

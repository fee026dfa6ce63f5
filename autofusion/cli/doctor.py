"""autofusion doctor."""

from __future__ import annotations

import time

import click
from rich.table import Table

from autofusion.cli.base import _console, _tracking_option
from autofusion.doctor import FAIL, OK, WARN, DoctorOptions, Row, failed, run_checks

_STYLE = {OK: "[green]ok[/]", WARN: "[yellow]warn[/]", FAIL: "[bold red]FAIL[/]"}


def doctor_table(rows: list[Row]) -> Table:
    """One row per check: its status, what it found and, for anything not ok, the fix."""
    table = Table(show_lines=False, title="autofusion doctor", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("found", overflow="fold")
    table.add_column("fix", overflow="fold")
    for r in rows:
        table.add_row(r.check, _STYLE.get(r.status, r.status), r.found, r.fix if r.status != OK else "")
    return table


@click.command()
@click.option("--address", default=None, help="Also check the Ray cluster a search would join with this --address.")
@_tracking_option
def doctor(address: str | None, tracking_uri: str | None) -> None:
    """Check the install (compiled libraries, accelerators), Ray, the MLflow store and the
    caches; exit code 1 when a check fails."""
    console = _console()
    t0 = time.time()
    with _console(stderr=True).status("checking the install, Ray and the MLflow store ..."):
        rows = run_checks(DoctorOptions(address=address, tracking_uri=tracking_uri))
    console.print(doctor_table(rows))
    took = f"{time.time() - t0:.1f} s"
    if failed(rows):
        bad = [r.check for r in rows if r.status == FAIL]
        console.print(f"{len(bad)} of {len(rows)} checks failed ({', '.join(bad)}) in {took}; see the fix column")
        raise click.exceptions.Exit(1)
    warned = sum(r.status == WARN for r in rows)
    note = f", {warned} with a warning" if warned else ""
    console.print(f"all {len(rows)} checks passed{note} in {took}")

"""Helpers of the reliability tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import Result

SPACES = Path(__file__).resolve().parents[2] / "autofusion" / "search_spaces"


def run_count(db: Path) -> int:
    """Runs in an MLflow sqlite store, deleted ones included; 0 when there is no store."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0]


def one_error_line(res: Result) -> str:
    """The single output line, which must be ``error: ...``, with exit code 2 and no traceback."""
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.output, res.output
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: "), res.output
    return lines[0]

"""Helpers of the reliability tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def run_count(db: Path) -> int:
    """Runs in an MLflow sqlite store, deleted ones included; 0 when there is no store."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0]

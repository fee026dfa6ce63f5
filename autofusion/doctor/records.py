"""The doctor's records: a check, its options and the row it returns (a leaf: no imports
of autofusion's other modules, nor of any library)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "fail"
GIB = 1024**3


@dataclass(frozen=True)
class Row:
    """One check's outcome: ``status`` is ok, warn or fail; ``fix`` is a command or step for
    anything not ok."""

    check: str
    status: str
    found: str
    fix: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class DoctorOptions:
    """What to check beyond this machine: a Ray cluster and an MLflow store (None: the defaults
    a search would use)."""

    address: str | None = None
    tracking_uri: str | None = None


@dataclass(frozen=True)
class Check:
    """A named check: where it runs (``group``: a child process shared with the checks of the
    same group, None: a thread of this process), its time limit, and the fix to show when it
    raises."""

    name: str
    run: Callable[[DoctorOptions], Row]
    timeout: float
    group: str | None = None
    fix: Callable[[], str] = lambda: ""
    needed: Callable[[DoctorOptions], bool] = lambda opts: True


"""Running checks isolated from each other, each with a time limit.

The checks of a group run one after another in a child process, so one that crashes the
interpreter (a library built against another torch can abort on import) or hangs is
reported, its process group killed (Ray's processes with it), and the rest go on in a
fresh child. Checks without a group run on threads of this process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autofusion.doctor.records import FAIL, OK, Check, DoctorOptions, Row
from autofusion.errors import AutofusionError

_STARTUP_SECONDS = 60.0  # a child process's Python start and first import, before its first check begins


def _failed(check: Check, found: str) -> Row:
    try:
        fix = check.fix()
    except Exception:  # noqa: BLE001 - the fix text is best effort
        fix = ""
    return Row(check.name, FAIL, found, fix)


def run_one(check: Check, opts: DoctorOptions) -> Row:
    """Runs one check here; an exception becomes a failed row (an AutofusionError's message
    already says what to do: its part after the first '; ' becomes the fix)."""
    t0 = time.time()
    try:
        row = check.run(opts)
    except AutofusionError as exc:
        what, _, how = str(exc).partition("; ")
        row = Row(check.name, FAIL, what, how or _failed(check, "").fix)
    except Exception as exc:  # noqa: BLE001 - any failure is this check's row, never the others'
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        row = _failed(check, f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    return Row(check.name, row.status, row.found, row.fix, round(time.time() - t0, 2))


def _in_thread(check: Check, opts: DoctorOptions) -> Callable[[], Row]:
    """Starts ``check`` on a daemon thread; the returned function waits for its row until a
    deadline (a thread that overruns is abandoned, its row a failure)."""
    box: dict[str, Row] = {}
    thread = threading.Thread(target=lambda: box.setdefault("row", run_one(check, opts)), daemon=True,
                              name=f"doctor-{check.name}")
    thread.start()
    started = time.monotonic()

    def wait() -> Row:
        thread.join(max(0.0, started + check.timeout - time.monotonic()))
        return box.get("row") or _failed(check, f"did not finish within {check.timeout:.0f} s")

    return wait


def _worker(checks: list[tuple[str, Callable[[DoctorOptions], Row], float]], opts: DoctorOptions, conn: Any,
            err_path: str) -> None:
    """A child process's side: its own session (so its Ray processes can be killed with it),
    output to a file (libraries print), then the checks in order: a message as each begins and
    one with its row."""
    os.setsid()
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    for name, run, timeout in checks:
        conn.send(("begin", name))
        conn.send(("row", asdict(run_one(Check(name, run, timeout), opts))))


def _stop(proc: Any) -> None:
    """Kills a child's whole process group (Ray's processes with it)."""
    if proc.exitcode is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.join(5)


def _exit_reason(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def _run_child(checks: list[Check], opts: DoctorOptions, rows: dict[str, Row]) -> None:
    """One child process (multiprocessing's spawn: a fresh interpreter that imports the check
    functions by name) running ``checks`` in order until one crashes or overruns."""
    ctx = multiprocessing.get_context("spawn")
    by_name = {c.name: c for c in checks}
    with tempfile.TemporaryDirectory(prefix="autofusion-doctor-") as tmp:
        err_path = Path(tmp) / "output"
        here, there = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=([(c.name, c.run, c.timeout) for c in checks], opts, there,
                                                 str(err_path)))
        proc.start()
        there.close()
        current: Check | None = None
        since, limit = time.monotonic(), _STARTUP_SECONDS
        try:
            while True:
                try:
                    ready = here.poll(max(0.0, since + limit - time.monotonic()))
                    msg = here.recv() if ready else None
                except (EOFError, OSError):  # the child died
                    proc.join(5)
                    detail = _last_line(err_path)
                    crashed = f"crashed its process ({_exit_reason(proc.exitcode or 0)})" + (
                        f": {detail}" if detail else "")
                    for c in ([current] if current is not None else checks):
                        rows.setdefault(c.name, _failed(c, crashed))
                    return
                if msg is None:
                    if current is None:  # the child never got to a check
                        for c in checks:
                            rows.setdefault(c.name, _failed(c, f"its process did not start within {limit:.0f} s"))
                    else:
                        rows[current.name] = _failed(current, f"did not finish within {limit:.0f} s (hung?)")
                    return
                kind, body = msg
                if kind == "begin":
                    current, since, limit = by_name[body], time.monotonic(), by_name[body].timeout
                else:
                    row = Row(**body)
                    if current is not None and row.status != OK and not row.fix:
                        row = Row(row.check, row.status, row.found, _failed(current, "").fix, row.seconds)
                    rows[row.check], current = row, None
                    if len(rows.keys() & by_name.keys()) == len(checks):
                        return
        finally:
            _stop(proc)


def _run_group(checks: list[Check], opts: DoctorOptions) -> dict[str, Row]:
    """Runs a group's checks in child processes: after a crash or an overrun the remaining
    checks go on in a fresh child."""
    rows: dict[str, Row] = {}
    while True:
        left = [c for c in checks if c.name not in rows]
        if not left:
            return rows
        _run_child(left, opts, rows)


def run_all(checks: Sequence[Check], opts: DoctorOptions) -> list[Row]:
    """Runs ``checks`` at once, each isolated, and returns their rows in the same order
    (a check not ``needed`` for ``opts``, such as the cluster without an address, is left out)."""
    chosen = [c for c in checks if _wanted(c, opts)]
    groups: dict[str, list[Check]] = {}
    for c in chosen:
        if c.group is not None:
            groups.setdefault(c.group, []).append(c)
    results: dict[str, Row] = {}
    threads = []
    for members in groups.values():
        t = threading.Thread(target=lambda m=members: results.update(_run_group(m, opts)), daemon=True)
        t.start()
        threads.append(t)
    waits = {c.name: _in_thread(c, opts) for c in chosen if c.group is None}
    for name, wait in waits.items():
        results[name] = wait()
    for t in threads:
        t.join()
    return [results[c.name] for c in chosen]


def _wanted(check: Check, opts: DoctorOptions) -> bool:
    try:
        return check.needed(opts)
    except Exception:  # noqa: BLE001
        return True


def failed(rows: Sequence[Row]) -> bool:
    """Whether any row failed (the command then exits 1)."""
    return any(r.status == FAIL for r in rows)

"""Real server subprocesses for integration tests: a free port, start, wait until a URL
answers, and stop (the whole process group, since MLflow's servers spawn workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests


def free_port() -> int:
    """A port nothing listens on right now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: Path, *, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Starts ``cmd`` in its own session (so it can be stopped with its children), logging to ``log``."""
    out = open(log, "wb")  # noqa: SIM115 - closed in stop()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            cwd=cwd, start_new_session=True)
    proc._log_file = out  # type: ignore[attr-defined]
    return proc


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Waits until ``url`` answers 200; fails with the server's log if it dies or never does."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s:\n{tail(log)}")


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM to the process group this test started, SIGKILL if it lingers ``grace`` seconds;
    ``grace=0``: SIGKILL at once, for servers whose state the test throws away (an MLflow
    server takes ~3.5 s to shut down gracefully on two cores, ``ray start --block`` over 5 s)."""
    try:
        if proc.poll() is None and grace > 0:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # workers left in the group, if any
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(timeout=10)
    finally:
        proc._log_file.close()  # type: ignore[attr-defined]


def tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"

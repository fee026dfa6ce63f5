"""A real ``ray start --head`` for integration tests, with Ray's default settings (no
``RAY_AUTH_MODE``), its own HOME (so its ``~/.ray/auth_token`` is the test's, never the
user's or another test's) and its own temp dir (its sessions and ``ray_current_cluster``
stay out of ``/tmp/ray``). Stopped with every process it started, found by that temp dir."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests import procs


@dataclass(frozen=True)
class Head:
    address: str
    port: int
    home: Path  # HOME of the head: a driver with this HOME finds its token in ~/.ray/auth_token
    token: str
    log: Path


def make_home(root: Path, token: str | None) -> Path:
    """A HOME folder, with ``~/.ray/auth_token`` holding ``token`` unless it is None."""
    root.mkdir(parents=True, exist_ok=True)
    if token is not None:
        (root / ".ray").mkdir(exist_ok=True)
        (root / ".ray" / "auth_token").write_text(token)
    return root


def env_for(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with ``home`` as HOME and no Ray auth settings of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
                                                             "RAY_ADDRESS")}
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def _kill_leftovers(marker: str) -> None:
    """SIGKILL to processes whose command line names ``marker`` (this head's temp dir): Ray
    agents and workers that outlive the head's process group."""
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (pid_dir / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(pid_dir.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _ray_start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start ARGS --block``, its output in ``log``, returned once it says it started (on
    failure, stopped and raised with its log's tail). Popen, not procs.start: that merges
    os.environ back in, RAY_AUTH_MODE included."""
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    out = open(log, "wb")  # noqa: SIM115 - closed by procs.stop
    proc = subprocess.Popen([ray_bin, "start", *args, "--block"], stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    proc._log_file = out  # type: ignore[attr-defined]
    deadline = time.time() + 120
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            procs.stop(proc, grace=0)
            raise RuntimeError(f"ray start {args[0]} did not start:\n{procs.tail(log)}")
        time.sleep(0.5)
    return proc


@contextlib.contextmanager
def ray_head(workdir: Path, *, token: str | None = "generate", num_cpus: int = 2) -> Iterator[Head]:
    """``ray start --head --port P`` as the README says, with a HOME of its own holding a token
    (so Ray turns token authentication on by default) unless ``token`` is None."""
    token = secrets.token_hex(32) if token == "generate" else token
    home = make_home(workdir / "head-home", token)
    temp = tempfile.mkdtemp(prefix="afray", dir="/tmp")  # Ray's socket paths must stay short
    port = procs.free_port()
    log = workdir / "ray-head.log"
    head = None
    try:
        head = _ray_start(["--head", "--port", str(port), "--num-cpus", str(num_cpus), "--include-dashboard", "false",
                           "--temp-dir", temp], log, env_for(home))
        yield Head(f"127.0.0.1:{port}", port, home, token or "", log)
    finally:
        if head is not None:
            procs.stop(head, grace=0)  # _kill_leftovers gets what outlives the group
        _kill_leftovers(temp)
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def ray_worker(head: Head, workdir: Path, *, num_cpus: int = 2) -> Iterator[Path]:
    """A second node on this machine, ``ray start --address HEAD`` as the README says (with the
    head's HOME and ``RAY_AUTH_MODE=token``, so it sends the head's token); yields its log.
    Use it inside :func:`ray_head`, whose exit gets what outlives it (its processes name the
    head's temp dir)."""
    log = workdir / "ray-worker.log"
    worker = _ray_start(["--address", head.address, "--num-cpus", str(num_cpus)], log,
                        env_for(head.home, RAY_AUTH_MODE="token"))  # a joining node sends the token only so
    try:
        yield log
    finally:
        procs.stop(worker, grace=0)

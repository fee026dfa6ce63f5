"""Connecting to Ray: a local instance, or a cluster at ``--address``, checked in seconds
before anything waits on it (``ray.init`` on a dead or wrong address waits for minutes).

Which Ray a search uses:

- ``--address HOST:PORT`` (or, without it, ``RAY_ADDRESS``): that cluster, probed first. A
  dead address, something that is not a Ray head, or a refused token fails in seconds with
  one line.
- ``auto`` (as ``--address`` or ``RAY_ADDRESS``): the cluster ``ray start`` last recorded on
  this machine, probed the same way.
- neither: a new local Ray of its own (``ray.init(address="local")``), never the cluster
  recorded in ``/tmp/ray/ray_current_cluster``, which a ``ray start --block`` stopped with
  Ctrl-C leaves behind pointing at nothing.

Token authentication (Ray 2.60): ``ray start --head`` turns it on when a token exists
(``~/.ray/auth_token``), but a driver joining an explicit address sends its token only when
``RAY_AUTH_MODE=token``. When a cluster refuses a driver that has a token and no
``RAY_AUTH_MODE``, the mode is switched on for this process, as Ray does itself for
``ray.init()`` without an address.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from autofusion.errors import ClusterError

AUTH_MODE_VAR = "RAY_AUTH_MODE"
GIB = 1024**3
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS
_probed: set[str] = set()  # addresses whose authentication this process has settled


def resolve_address(address: str | None) -> tuple[str | None, str]:
    """The cluster address a search joins, and the flag it came from.

    ``--address`` wins, then ``RAY_ADDRESS``; ``auto`` becomes the address ``ray start``
    recorded on this machine; ``local``, empty or nothing means a new local Ray (None).
    """
    label = "--address"
    if not address:
        address, label = os.environ.get("RAY_ADDRESS", "").strip() or None, "RAY_ADDRESS"
    if not address or address == "local":
        return None, label
    if address == "auto":
        recorded = _recorded_address()
        if recorded is None:
            raise ClusterError(
                f"{label} auto: no Ray cluster was started with `ray start` on this machine; start one with "
                f"`ray start --head` or {'leave out --address' if label == '--address' else 'unset RAY_ADDRESS'} "
                "to use a local Ray"
            )
        return recorded, label
    return address, label


def _recorded_address() -> str | None:
    """The address in Ray's ``ray_current_cluster`` file (what ``ray.init()`` would join)."""
    try:
        from ray._private.utils import read_ray_address

        return read_ray_address(None) or None
    except ImportError:  # pragma: no cover - Ray moved it; the default location is enough
        root = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        file = Path(root) / "ray" / "ray_current_cluster"
        if not file.is_file():
            return None
        return file.read_text().strip() or None


def probe_address(address: str | None) -> None:
    """Fails in seconds when nothing answers at a Ray ``address`` (ray.init would wait minutes),
    when it is not a Ray head, or when the cluster refuses this machine's token."""
    target, label = resolve_address(address)
    if target is None or target in _probed:  # None: a local Ray; probed: already, by this process
        return
    shown = target if address in (None, "", "auto") else address  # auto: the recorded address it stands for
    hostport = target.split("://", 1)[-1].strip()
    import socket

    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"{label} {shown!r}: expected HOST:PORT of a Ray head node, e.g. 127.0.0.1:6379")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as sock:
            speaks_grpc = os.environ.get("RAY_USE_TLS", "0") not in ("0", "") or _answers_http2(sock)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        start = "ray start --head" + ("" if "://" in target else f" --port {port}")
        leave = "leave out --address" if label == "--address" else "unset RAY_ADDRESS"
        raise ClusterError(
            f"cannot reach the Ray cluster at {shown!r}: nothing answers on port {port} ({reason}); "
            f"start it with `{start}` or {leave} to use a local Ray"
        ) from None
    if not speaks_grpc:
        raise ClusterError(
            f"{label} {shown!r}: something answers on port {port} but it is not a Ray head node "
            "(no gRPC); give the address `ray start --head` printed, e.g. 127.0.0.1:6379"
        )
    if "://" not in target:  # ray:// (Ray Client) authenticates on its own connection
        _settle_authentication(target, shown, label)
    _probed.add(target)


def _answers_http2(sock: Any) -> bool:
    """Whether the server on ``sock`` speaks HTTP/2 (Ray's GCS and client servers are gRPC):
    it must answer the connection preface with a SETTINGS frame. A web server, a database or
    a silent port does not, and ray.init would otherwise wait minutes on it."""
    try:
        sock.settimeout(5)
        sock.sendall(_HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 0x4  # frame type SETTINGS


def token_source() -> str | None:
    """Where Ray would read this machine's token from, in Ray's order of precedence
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``); None when none."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if path:
        # Ray aborts the process on an unreadable RAY_AUTH_TOKEN_PATH: say so before it does.
        try:
            ok = bool(Path(path).expanduser().read_text().strip())
        except OSError as exc:
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH={path}: cannot read the token ({exc.strerror}); "
                               "fix the path or unset RAY_AUTH_TOKEN_PATH") from None
        if not ok:
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH={path}: the file is empty; put the cluster's token in it "
                               "(`ray get-auth-token` on the head node prints it)")
        return f"RAY_AUTH_TOKEN_PATH ({path})"
    default = Path.home() / ".ray" / "auth_token"
    try:
        return "~/.ray/auth_token" if default.read_text().strip() else None
    except OSError:
        return None


def _settle_authentication(target: str, shown: str, label: str) -> None:
    """Connects a GCS client to ``target`` (half a second); when the cluster refuses it for
    want of a token and this machine has one, switches token mode on for this process."""
    refused = _gcs_refuses(target)
    if refused == _NOT_GCS:
        raise ClusterError(
            f"{label} {shown!r}: a Ray process answers there but not the head's GCS (another of Ray's ports?); "
            "give the address `ray start --head` printed, e.g. 127.0.0.1:6379"
        )
    if refused is None:
        return
    mode = os.environ.get(AUTH_MODE_VAR)
    source = token_source() if mode != "disabled" else None
    if mode is None and source is not None:
        _enable_token_mode()
        refused = _gcs_refuses(target)
        if refused is None:
            return
    where = f"the Ray cluster at {shown!r}"
    fetch = "`ray get-auth-token` on its head node prints its token"
    if mode == "disabled":
        raise ClusterError(f"{where} uses token authentication but {AUTH_MODE_VAR}=disabled here; unset "
                           f"{AUTH_MODE_VAR} (or set it to token) and make the head's token available here: {fetch}")
    if source is None:
        raise ClusterError(f"{where} uses token authentication and this machine has no token (RAY_AUTH_TOKEN, "
                           f"RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token); {fetch}: set RAY_AUTH_TOKEN to it")
    raise ClusterError(f"{where} refused the token from {source} ({refused}); {fetch}: set RAY_AUTH_TOKEN to it")


_NOT_GCS = "not-gcs"
_GRPC_UNIMPLEMENTED = 12


def _gcs_refuses(target: str) -> str | None:
    """None when a GCS client connects to ``target``; Ray's reason when it is refused for
    authentication; ``_NOT_GCS`` when a gRPC server there knows no GCS call (a raylet's or
    an agent's port). Other failures are left to ``ray.init``, which reports them itself."""
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError, RpcError
    except ImportError:  # pragma: no cover - a Ray without token authentication
        return None
    with quiet_native_stderr():
        try:
            client = GcsClient(address=target)
            del client
        except AuthenticationError as exc:
            return str(exc).split(". ", 1)[0].replace("RPC error: ", "").strip()
        except RpcError as exc:
            return _NOT_GCS if getattr(exc, "rpc_code", None) == _GRPC_UNIMPLEMENTED else None
        except Exception:  # noqa: BLE001 - not an authentication problem; ray.init says what it is
            return None
    return None


def _enable_token_mode() -> None:
    """``RAY_AUTH_MODE=token`` for this process (and what it starts), refreshing Ray's cached
    config and token, as Ray's ``ray.init()`` does when it finds a local token."""
    os.environ[AUTH_MODE_VAR] = "token"
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - the environment variable is enough
        pass


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Keeps Ray's C++ warnings (written to file descriptor 2, not through Python) off the
    terminal while a probe fails on purpose; AUTOFUSION_VERBOSE shows them."""
    if os.environ.get("AUTOFUSION_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def init_ray(address: str | None, verbose: bool, warm: bool = False) -> bool:
    """Starts a local Ray of its own, or joins ``address`` (or ``RAY_ADDRESS``) after probing
    it; returns whether this call started or joined Ray (and so should shut it down).
    ``warm``: a local Ray's idle workers import what a trial needs as they start
    (``search/warmworkers.py``)."""
    import ray
    from ray.exceptions import RayError

    if ray.is_initialized():
        return False
    target, _ = resolve_address(address)
    if target is not None and target not in _probed:
        probe_address(target)
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.INFO if verbose else logging.ERROR,
                                  log_to_driver=verbose, configure_logging=True)
    if warm and target is None:
        from autofusion.search.warmworkers import local_system_config

        kwargs["_system_config"] = local_system_config()
    try:
        # "local": a new instance even when RAY_ADDRESS or a recorded (maybe dead) cluster exists.
        ray.init(address=target or "local", **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError, RayError) as exc:
        if warm and target is None:
            from autofusion.search.warmworkers import forget_local_start

            forget_local_start()
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        where = f"the Ray cluster at {(address or target)!r}" if target else "a local Ray instance"
        raise ClusterError(f"cannot start or reach {where}: {first}") from None
    return True


def _fmt(value: float) -> str:
    return f"{value:g}" if value < 100 else f"{value:.0f}"


def _plural(n: float, one: str, many: str) -> str:
    return f"{_fmt(n)} {one if n == 1 else many}"


def check_trial_resources(cpus: float, gpus: float = 0.0, memory_gib: float | None = None,
                          nodes: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Fails in seconds when no node of the running Ray cluster could ever hold one trial
    (Tune would otherwise wait forever for resources that never come).

    Args:
        cpus: CPUs each trial asks for.
        gpus: GPUs each trial asks for.
        memory_gib: memory each trial reserves, in GiB (Ray's ``memory`` resource), or None.
        nodes: ``ray.nodes()`` records; read from the connected Ray when None.

    Raises:
        ClusterError: what was asked, what the largest node has, and what to pass instead.
    """
    if nodes is None:
        import ray

        nodes = ray.nodes()
    sizes = [dict(n.get("Resources") or {}) for n in nodes if n.get("Alive", True)]
    asked = {"CPU": float(cpus), "GPU": float(gpus or 0.0)}
    if memory_gib:
        asked["memory"] = float(memory_gib) * GIB
    wanted = {k: v for k, v in asked.items() if v > 0}
    if any(all(s.get(k, 0.0) >= v for k, v in wanted.items()) for s in sizes):
        return
    largest = {k: max((s.get(k, 0.0) for s in sizes), default=0.0) for k in asked}
    short = [k for k, v in wanted.items() if largest[k] < v]
    what = {
        "CPU": lambda v: _plural(v, "CPU", "CPUs"),
        "GPU": lambda v: _plural(v, "GPU", "GPUs") if v else "no GPU",
        "memory": lambda v: f"{v / GIB:.1f} GiB of memory",
    }
    ask = " and ".join(what[k](v) for k, v in wanted.items())
    if not short:  # each resource exists somewhere, but never all on one node
        shapes = ", ".join(" + ".join(what[k](s.get(k, 0.0)) for k in wanted) for s in sizes[:5])
        raise ClusterError(
            f"each trial asks for {ask} but no single node of this Ray cluster has all of it (its nodes: {shapes}); "
            "lower --cpus-per-trial, --gpus-per-trial or --memory-per-trial to fit one node"
        )
    flags = {"CPU": ("--cpus-per-trial", cpus), "GPU": ("--gpus-per-trial", gpus),
             "memory": ("--memory-per-trial", memory_gib)}
    fixes = {
        "CPU": lambda v: f"pass --cpus-per-trial {_fmt(int(v) if v >= 1 else v)} (or less)",  # above 1: whole CPUs
        "GPU": lambda v: f"pass --gpus-per-trial {_fmt(v)} (or less)" if v else "leave out --gpus-per-trial",
        "memory": lambda v: f"pass --memory-per-trial {int(v / GIB * 10) / 10:g} (or less)",
    }
    lead = " and ".join(f"{flags[k][0]} {flags[k][1]}" for k in short)
    if short == ["GPU"] and not largest["GPU"]:
        has, bigger = "this Ray cluster has no GPU", "with GPUs"
    else:
        has = (f"each trial asks for {ask} but the largest node of this Ray cluster has "
               + " and ".join(what[k](largest[k]) for k in short))
        bigger = "with bigger nodes"
    instead = " and ".join(fixes[k](largest[k]) for k in short)
    raise ClusterError(f"{lead}: {has}, so no trial could start; {instead}, or pass --address of a cluster {bigger}")

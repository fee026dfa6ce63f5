"""Connecting to Ray: a local instance, or a cluster at ``--address``, checked in seconds
before anything waits on it (``ray.init`` on a dead or wrong address waits for minutes)."""

from __future__ import annotations

import logging
import os
from typing import Any

from autofusion.errors import ClusterError


def probe_address(address: str | None) -> None:
    """Fails in seconds when nothing answers at a Ray ``address`` (ray.init would wait minutes)."""
    target = address.split("://", 1)[-1].strip() if address else ""
    if not target or target in ("auto", "local"):
        return
    import socket

    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--address {address!r}: expected HOST:PORT of a Ray head node, e.g. 127.0.0.1:6379")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as sock:
            speaks_grpc = os.environ.get("RAY_USE_TLS", "0") not in ("0", "") or _answers_http2(sock)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        start = "ray start --head" + ("" if "://" in address else f" --port {port}")
        raise ClusterError(
            f"cannot reach the Ray cluster at {address!r}: nothing answers on port {port} ({reason}); "
            f"start it with `{start}` or leave out --address to use a local Ray"
        ) from None
    if not speaks_grpc:
        raise ClusterError(
            f"--address {address!r}: something answers on port {port} but it is not a Ray head node "
            "(no gRPC); give the address `ray start --head` printed, e.g. 127.0.0.1:6379"
        )


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS


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


def init_ray(address: str | None, verbose: bool) -> bool:
    """Starts local Ray (or joins ``address``, which ``probe_address`` has checked); returns
    whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.INFO if verbose else logging.ERROR,
                                  log_to_driver=verbose, configure_logging=True)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        hint = "; if the cluster uses token authentication, set RAY_AUTH_TOKEN to its token" if address else ""
        raise ClusterError(f"cannot start or reach {where}: {first}{hint}") from None
    return True

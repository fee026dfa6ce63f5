"""What a search connects to: a local Ray, a Ray cluster at ``--address``, the MLflow store;
each checked with the search's own code (``autofusion.search.cluster``, ``autofusion.tracking``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from autofusion.doctor.install import reinstall_command
from autofusion.doctor.records import GIB, OK, DoctorOptions, Row
from autofusion.errors import AutofusionError


def _ray_shape(ray: Any) -> str:
    nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
    cpus = sum(n.get("CPU", 0) for n in nodes)
    gpus = sum(n.get("GPU", 0) for n in nodes)
    mem = sum(n.get("memory", 0) for n in nodes) / GIB
    big = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    shape = f"{len(nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs, {mem:.1f} GiB for tasks"
    if len(nodes) > 1:
        shape += f"; largest node {big.get('CPU', 0):g} CPUs, {big.get('GPU', 0):g} GPUs"
    return shape


def check_ray_local(opts: DoctorOptions) -> Row:
    """Starts a local Ray as a search does (never joining a recorded cluster) and runs a task."""
    import ray

    from autofusion.search.cluster import init_ray

    t0 = time.time()
    init_ray("local", verbose=False)  # local even where RAY_ADDRESS names a cluster (the next row)
    try:
        if ray.get(ray.remote(lambda: 42).remote(), timeout=60) != 42:
            raise RuntimeError("a Ray task returned a wrong result")
        found = f"Ray {ray.__version__}: started and ran a task in {time.time() - t0:.1f} s; {_ray_shape(ray)}"
    finally:
        ray.shutdown()
    return Row("Ray (local)", OK, found)


def check_ray_cluster(opts: DoctorOptions) -> Row:
    """Probes ``--address`` (or RAY_ADDRESS) as a search does, then joins it as a driver."""
    import ray

    from autofusion.search.cluster import init_ray, probe_address, resolve_address

    target, label = resolve_address(opts.address)
    t0 = time.time()
    probe_address(opts.address)
    init_ray(opts.address, verbose=False)
    try:
        auth = " (token authentication)" if os.environ.get("RAY_AUTH_MODE") == "token" else ""
        found = f"{label} {target}: joined in {time.time() - t0:.1f} s{auth}; {_ray_shape(ray)}"
    finally:
        ray.shutdown()
    return Row("Ray cluster", OK, found)


def cluster_wanted(opts: DoctorOptions) -> bool:
    from autofusion.search.cluster import resolve_address

    try:
        return resolve_address(opts.address)[0] is not None
    except AutofusionError:
        return True  # the check reports why


# --- tracking, disk, caches -------------------------------------------------------------

def check_mlflow_store(opts: DoctorOptions) -> Row:
    """The store a search would use, checked by the search's own store check. A sqlite store
    that does not exist yet is not created: its nearest existing folder must be writable."""
    from autofusion import tracking

    uri = tracking.resolve_tracking_uri(opts.tracking_uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.exists():
            existing = next((p for p in (db.parent, *db.parent.parents) if p.exists()), Path("/"))
            if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
                return Row("MLflow store", OK, f"{uri}: not created yet; {existing.resolve()} is writable "
                                               "(the first search creates the store)")
    tracking.check_store(uri)  # raises TrackingError with what is wrong and the fix
    count = len(tracking.client(uri).search_experiments(max_results=1000))
    return Row("MLflow store", OK, f"{uri}: reachable and writable, {count} experiment(s)")


def ray_fix() -> str:
    return "run the search with --verbose for Ray's own messages; " + reinstall_command("ray")

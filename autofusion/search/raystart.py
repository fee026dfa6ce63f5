"""Ray before it runs: the nodes a search will get, read without starting Ray (so that a trial
no node can hold is found before the data is read), and Ray started on a thread of its own
while the driver prepares the features, or, for ``autofusion search`` in a process of its own,
as soon as the checks that need no data have passed (:func:`start_early`), beside the
driver's imports and the data."""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from autofusion.search.cluster import (
    init_ray,
    probe_address,
    quiet_native_stderr,
    resolve_address,
)
from autofusion.search.records import SearchOptions
from autofusion.search.settings import planned_concurrency, trial_resources
from autofusion.search.warmworkers import forget_local_start, pays
from autofusion.spaces.schema import SearchSettings

log = logging.getLogger(__name__)

# Ray Tune's settings, set before Ray starts (here: early, or after the data) so that its
# processes inherit them.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a search never downloads weights (autofusion weights pull does)


class RayStart:
    """:func:`init_ray` on a thread of its own, so that Ray's processes start while the driver
    works (the features, on a second core), and ``ray.shutdown`` on the same thread, so that
    they stop while the driver finishes (the served model, the logging). The thread lives as
    long as the Ray it started: Ray's processes ask Linux to kill them when their parent ends
    (``PR_SET_PDEATHSIG``), and Linux means the thread that started them."""

    def __init__(self, address: str | None, verbose: bool, warm: bool = False) -> None:
        self._done, self._release, self._stopped = threading.Event(), threading.Event(), threading.Event()
        self._started, self._error = False, None
        threading.Thread(target=self._run, args=(address, verbose, warm), name="autofusion-ray", daemon=True).start()

    def _run(self, address: str | None, verbose: bool, warm: bool) -> None:
        try:
            self._started = init_ray(address, verbose, warm=warm)
        except BaseException as exc:  # noqa: BLE001 - raised where the search waits for Ray
            self._error = exc
        finally:
            self._done.set()
        try:
            if self._started:
                self._release.wait()  # until stop() or shutdown(): Ray's processes die with this thread
                import ray

                ray.shutdown()
                forget_local_start()
        except Exception as exc:  # noqa: BLE001 - stopping is best effort; the processes die with the thread
            log.warning("ray.shutdown: %s: %s", type(exc).__name__, exc)
        finally:
            self._stopped.set()

    def result(self) -> bool:
        """Waits for Ray; whether this started or joined it. Raises the start's error."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._started

    def stop(self) -> None:
        """Stops (or leaves) the Ray this started, in the background: nothing after this call may use Ray."""
        self._release.set()

    def shutdown(self) -> None:
        """Stops (or leaves) the Ray this started, once its start is over, and waits until it has;
        nothing if the start failed."""
        self._done.wait()
        self._release.set()
        self._stopped.wait()


_early: RayStart | None = None  # started by start_early, not yet taken by the driver


def start_early(opts: SearchOptions, search: SearchSettings | None) -> bool:
    """Starts a local Ray now, on a thread of its own, for the search ``opts`` describes
    (``search``: its space file's ``search`` section): its processes, and its idle workers'
    imports (``search/warmworkers.py``), run beside the driver's imports and the data, on the
    cores those leave idle; the driver takes it (:func:`take_early`). Only for a local Ray
    (a cluster is started already), and only where the process ends with the command: a Ray
    started for a manifest that turns out bad is not stopped, it ends with the process
    (``cli.exit_now``). Returns whether it started one."""
    global _early
    if _early is not None or resolve_address(opts.address)[0] is not None:
        return False
    s = search or SearchSettings()
    _early = start_ray(None, opts.verbose, lambda cpus: planned_concurrency(s, opts, cpus), trial_resources(s, opts)[1])
    return True


def start_ray(address: str | None, verbose: bool, at_once: Callable[[float], int],
              gpus_per_trial: float = 0.0) -> RayStart:
    """:class:`RayStart` for a search that runs ``at_once(cpus)`` trials at once where Ray has
    ``cpus`` CPUs (fewer where each takes ``gpus_per_trial`` of this machine's GPUs); a local
    Ray's idle workers are warm when every one of them will hold a trial
    (``search/warmworkers.py``)."""
    return RayStart(address, verbose, warm=warm_pays(address, at_once, gpus_per_trial))


def warm_pays(address: str | None, at_once: Callable[[float], int], gpus_per_trial: float = 0.0) -> bool:
    """Whether :func:`start_ray`'s Ray gets warm idle workers: a local one whose idle workers
    (one per CPU) the trials at once (``at_once(cpus)``, fewer where GPUs bound them) all take."""
    if resolve_address(address)[0] is not None:
        return False
    try:
        cpus = local_cpus()
        n = at_once(cpus)
        if gpus_per_trial > 0:
            n = min(n, int(_local_resources().get("GPU", 0.0) // gpus_per_trial))
        return pays(n, cpus)
    except Exception:  # noqa: BLE001 - Ray's private detection moved: cold workers, as before
        return False


def take_early() -> RayStart | None:
    """The Ray :func:`start_early` started, once (None: none)."""
    global _early
    out, _early = _early, None
    return out


def planned_nodes(address: str | None) -> list[dict[str, Any]] | None:
    """The nodes a search will run on, read before Ray starts, as ``ray.nodes()`` records: for
    a local Ray, the one node Ray makes of this machine (Ray's own detection of its CPUs, GPUs
    and memory); for a cluster (``address``, probed first), its nodes, from its GCS. None when
    Ray's internals moved; the resource check then waits for Ray."""
    target, _ = resolve_address(address)
    if target is None or "://" not in target:  # a named address answers as a Ray head, even when
        probe_address(address)                   # this process's Ray is up (that one is then used)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # this process's Ray (tests, notebooks): the search uses it
        return ray.nodes()
    if target is not None and "://" in target:  # Ray Client: its nodes are known once connected
        return None
    try:
        if target is None:
            return [{"Alive": True, "Resources": _local_resources()}]
        return _cluster_nodes(target)
    except Exception:  # noqa: BLE001 - Ray's private API changed: check once Ray is up
        return None


def local_cpus() -> float:
    """The CPUs a local Ray would give this machine's node (its idle workers: one per CPU)."""
    return float(_local_resources().get("CPU", 1.0))


@functools.lru_cache(maxsize=1)
def _local_resources() -> dict[str, float]:
    """What ``ray.init(address="local")`` would give this machine's node (cached per process)."""
    from ray._private.resource_and_label_spec import ResourceAndLabelSpec

    return dict(ResourceAndLabelSpec().resolve(is_head=True, node_ip_address="127.0.0.1").to_resource_dict())


def _cluster_nodes(target: str) -> list[dict[str, Any]]:
    """The node records of the cluster at ``target``, read from its GCS without joining it."""
    from ray._private.state import GlobalState
    from ray._raylet import GcsClientOptions

    state = GlobalState()
    state._initialize_global_state(GcsClientOptions.create(target, None, allow_cluster_id_nil=True,
                                                           fetch_cluster_id_if_nil=False))
    try:
        with quiet_native_stderr():
            return list(state.node_table())
    finally:
        state.disconnect()

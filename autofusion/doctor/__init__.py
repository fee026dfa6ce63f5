"""``autofusion doctor``: does this install work here? One row per check, in seconds.

Each check is a small function ``(DoctorOptions) -> Row``: whether a compiled library loads
*and runs* (:mod:`.install`), that a local Ray starts, that ``--address`` answers and the
MLflow store is usable (:mod:`.services`), the free disk under the cache folder and the
pretrained-weight caches (:mod:`.storage`). :mod:`.runner` runs them isolated from each
other with time limits; :data:`CHECKS` says which runs where.
"""

from __future__ import annotations

from collections.abc import Sequence

from autofusion.doctor.install import (
    check_accelerators,
    check_pyav,
    check_soundfile,
    check_torch,
    check_torchaudio,
    check_torchvision,
    installed_version,
    locked_version,
    reinstall_command,
)
from autofusion.doctor.records import FAIL, OK, WARN, Check, DoctorOptions, Row
from autofusion.doctor.runner import failed, run_all, run_one
from autofusion.doctor.services import (
    check_mlflow_store,
    check_ray_cluster,
    check_ray_local,
    cluster_wanted,
    ray_fix,
)
from autofusion.doctor.storage import (
    autofusion_home,
    check_disk,
    check_hf_cache,
    check_torch_hub_cache,
    hf_hub_cache,
    torch_hub_checkpoints,
)

# The compiled libraries share one child process ("libraries"): one import of torch for five
# checks, and a crash still costs only the check that crashed. Ray gets children of its own.
CHECKS: tuple[Check, ...] = (
    Check("torch", check_torch, 90, "libraries", lambda: reinstall_command("torch")),
    Check("torchvision", check_torchvision, 60, "libraries", lambda: reinstall_command("torchvision")),
    Check("torchaudio", check_torchaudio, 60, "libraries", lambda: reinstall_command("torchaudio")),
    Check("soundfile", check_soundfile, 30, "libraries", lambda: reinstall_command("soundfile")),
    Check("PyAV", check_pyav, 30, "libraries", lambda: reinstall_command("av")),
    Check("accelerators", check_accelerators, 30, "libraries", lambda: "check `nvidia-smi` and CUDA_VISIBLE_DEVICES"),
    Check("Ray (local)", check_ray_local, 90, "ray-local", ray_fix),
    Check("Ray cluster", check_ray_cluster, 60, "ray-cluster",
          lambda: "check the address `ray start --head` printed, or leave out --address", cluster_wanted),
    Check("MLflow store", check_mlflow_store, 60, None,
          lambda: "pass --tracking-uri sqlite:///PATH/mlflow.db (or set MLFLOW_TRACKING_URI)"),
    Check("disk", check_disk, 30, None, lambda: "set AUTOFUSION_HOME to a writable folder"),
    Check("weights: HF hub", check_hf_cache, 30, None),
    Check("weights: torch hub", check_torch_hub_cache, 30, None),
)


def run_checks(opts: DoctorOptions | None = None, checks: Sequence[Check] = CHECKS) -> list[Row]:
    """Runs ``checks`` at once, each isolated with its time limit, and returns their rows in
    the same order (a check not ``needed`` for ``opts``, such as the cluster without an
    address, is left out)."""
    return run_all(checks, opts or DoctorOptions())


__all__ = [
    "CHECKS", "FAIL", "OK", "WARN", "Check", "DoctorOptions", "Row", "autofusion_home", "check_accelerators",
    "check_disk", "check_hf_cache", "check_mlflow_store", "check_pyav", "check_ray_cluster", "check_ray_local",
    "check_soundfile", "check_torch", "check_torch_hub_cache", "check_torchaudio", "check_torchvision", "failed",
    "hf_hub_cache", "installed_version", "locked_version", "reinstall_command", "run_checks", "run_one",
    "torch_hub_checkpoints",
]

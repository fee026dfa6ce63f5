"""The disk: free space under the cache folder, and the pretrained-weight caches (Hugging
Face hub for transformers and timm, torch hub for torchvision) with counts and sizes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from autofusion.doctor.records import FAIL, GIB, OK, WARN, DoctorOptions, Row
from autofusion.home import autofusion_home, hf_hub_cache, torch_hub_checkpoints

MIN_FREE_GIB = 1.0  # below: fail (a decode cache of the demo data alone is ~100 MB; trials checkpoint too)
LOW_FREE_GIB = 5.0  # below: warn


def _tree_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root``, not following links (the HF cache links
    snapshots to blobs: each file is counted once)."""
    total, todo = 0, [root]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    todo.append(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _size(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def check_disk(opts: DoctorOptions) -> Row:
    """Free space on the disk that holds the cache folder (decoded data, checkpoints)."""
    home = autofusion_home()
    existing = next((p for p in (home, *home.parents) if p.exists()), Path("/"))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return Row("disk", FAIL, f"{home}: {existing} is not a writable folder",
                   "set AUTOFUSION_HOME to a writable folder")
    usage = shutil.disk_usage(existing)
    used = f"caches use {_size(_tree_bytes(home))}" if home.is_dir() else "not created yet"
    found = f"{home} ({used}): {_size(usage.free)} free of {_size(usage.total)}"
    if usage.free < MIN_FREE_GIB * GIB:
        return Row("disk", FAIL, found, "free space on that disk, or set AUTOFUSION_HOME to a folder on a bigger one")
    if usage.free < LOW_FREE_GIB * GIB:
        return Row("disk", WARN, found, "free space on that disk, or set AUTOFUSION_HOME to a folder on a bigger one")
    return Row("disk", OK, found)


def _names(items: Sequence[str], limit: int = 4) -> str:
    more = f", +{len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_hf_cache(opts: DoctorOptions) -> Row:
    """Models in the Hugging Face hub cache (pretrained text/audio encoders, timm's images)."""
    root = hf_hub_cache()
    models = sorted(p.name[len("models--"):].replace("--", "/") for p in root.glob("models--*") if p.is_dir())
    if not models:
        where = f"{root}: no models" if root.exists() else f"{root}: does not exist"
        return Row("weights: HF hub", OK, f"{where} (pretrained transformers/timm encoders download there)")
    return Row("weights: HF hub", OK, f"{root}: {len(models)} model(s), {_size(_tree_bytes(root))} "
                                      f"({_names(models)})")


def check_torch_hub_cache(opts: DoctorOptions) -> Row:
    """Checkpoints in the torch hub cache (torchvision's pretrained image and video encoders)."""
    root = torch_hub_checkpoints()
    files = sorted(p.name for p in root.glob("*") if p.is_file()) if root.is_dir() else []
    if not files:
        where = f"{root}: no checkpoints" if root.exists() else f"{root}: does not exist"
        return Row("weights: torch hub", OK, f"{where} (pretrained torchvision encoders download there)")
    return Row("weights: torch hub", OK, f"{root}: {len(files)} checkpoint(s), {_size(_tree_bytes(root))} "
                                         f"({_names(files)})")

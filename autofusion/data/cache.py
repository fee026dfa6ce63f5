"""Arrays computed once per dataset and kept on disk: the decoded files of a manifest, and
(``autofusion.features``) encoder features. Each entry is a folder of ``.npy`` files and a
``status.json`` written last, through a temp folder renamed into place, so a half-written
entry is never read; a second search memory-maps it instead of computing again.

Keys hash the data fingerprint (the manifest's bytes and every named file's size and
mtime) with whatever changes the arrays (preprocessing settings, a model's identity).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from autofusion.modalities.base import DecodeError, Modality

CACHE_VERSION = 2


@dataclass(frozen=True)
class BadCell:
    """A cell that cannot be used, with the 1-based data-row number users see."""

    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} {self.field}: {self.reason}"


def default_home() -> Path:
    """Where autofusion keeps caches and search state: ``$AUTOFUSION_HOME`` or ``./.autofusion``."""
    return Path(os.environ.get("AUTOFUSION_HOME", ".autofusion")).resolve()


def fingerprint(manifest: Path, files: Sequence[str | None]) -> str:
    """sha256 of the manifest's bytes and the size and mtime of every file it names."""
    h = hashlib.sha256(manifest.read_bytes())
    for f in files:
        if f is None:
            continue
        try:
            st = os.stat(f)
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}|missing\n".encode())
    return h.hexdigest()[:16]


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts``."""
    blob = json.dumps({"v": CACHE_VERSION, "parts": parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def feature_dir(home: Path, *parts: Any) -> Path:
    """The entry of encoder features keyed by ``parts`` (data fingerprint, model identity,
    preprocessing): ``<home>/cache/features/<key>``, beside the decode cache."""
    return home / "cache" / "features" / cache_key(*parts)


def load_entry(folder: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The arrays (memory-mapped) and status of a complete entry; None if absent or unreadable."""
    status = folder / "status.json"
    if not status.is_file():
        return None
    try:
        info = json.loads(status.read_text())
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in info["arrays"]}
        return arrays, info
    except (OSError, ValueError, KeyError, TypeError):
        return None  # rebuilt by the caller


def save_entry(folder: Path, arrays: dict[str, np.ndarray], info: dict) -> None:
    """Writes atomically; caching is best effort (a full disk only costs the next search time)."""
    tmp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a)
        (tmp / "status.json").write_text(json.dumps({**info, "arrays": list(arrays)}))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def decode_column(
    modality: Modality, prep: dict, sources: Sequence[str | None], field: str, shown: Sequence[str],
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[BadCell]]:
    """Decodes every non-empty cell (a resolved path) of one column, in threads; bad files
    become :class:`BadCell` s (naming the cell as written in the manifest) and zeros."""
    out = np.zeros((len(sources), *modality.shape(prep)), dtype=modality.dtype)
    bad: list[BadCell] = []
    todo = [i for i, s in enumerate(sources) if s is not None]

    def work(i: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return i, modality.decode(sources[i], prep), None
        except DecodeError as exc:
            return i, None, f"{shown[i]!r}: {exc}"

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        for n, (i, arr, err) in enumerate(pool.map(work, todo, chunksize=64), start=1):
            if err is None:
                out[i] = arr
            else:
                bad.append(BadCell(i + 1, field, err))
            if progress and n % 256 == 0:
                progress(256)
    if progress:
        progress(len(todo) % 256)
    return out, bad


def decoded_columns(
    folder: Path, columns: dict[str, tuple[Modality, dict, Sequence[str | None], str, Sequence[str]]],
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[BadCell], bool]:
    """Decoded file columns from the cache entry ``folder`` when complete, else decoded now and
    cached. ``columns``: name -> (modality, prep, resolved sources, field name in errors,
    the cells as written).
    Returns (arrays, bad cells, whether it was a cache hit)."""
    hit = load_entry(folder)
    if hit is not None:
        arrays, info = hit
        return arrays, [BadCell(**b) for b in info.get("bad", [])], True
    arrays: dict[str, np.ndarray] = {}
    bad: list[BadCell] = []
    for name, (modality, prep, sources, field, shown) in columns.items():
        arrays[name], col_bad = decode_column(modality, prep, sources, field, shown, progress)
        bad.extend(col_bad)
    save_entry(folder, arrays, {"bad": [asdict(b) for b in bad]})
    return arrays, bad, False

"""Arrays computed once per dataset and kept on disk: the decoded files of a manifest, and
(``autofusion.search.features``) encoder features. Each entry is a folder of ``.npy`` files and a
``status.json`` written last; a second search memory-maps it instead of computing again.

An entry holds each distinct file (or text) once; rows index into it
(:class:`~autofusion.data.arrays.IndexedRows`). It is written chunk by chunk straight to
disk (memory stays flat in the rows) in a hidden ``.<key>.partial`` folder that records how
far it got: a run interrupted halfway resumes there, and a finished entry is renamed into
place, so a half-written one is never read. A lock beside it makes a second process that
needs the same entry wait for it instead of computing it twice.

Keys hash the data fingerprint (the manifest's bytes and every named file's size and
mtime) with whatever changes the arrays (preprocessing settings, a model's identity).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from autofusion.data.arrays import IndexedRows, distinct_cells
from autofusion.home import decode_cache_dir
from autofusion.modalities.base import DecodeError, Modality

CACHE_VERSION = 4  # 3: distinct files once plus a row index, written in chunks; 4: photos turned upright (EXIF)
CHUNK_BYTES = 32 * 2**20  # decoded bytes per chunk written
log = logging.getLogger(__name__)

#: (start, end) -> (arrays of the distinct entries start..end-1, notes to keep with the entry)
Produce = Callable[[int, int], tuple[dict[str, np.ndarray], list]]


@dataclass(frozen=True)
class BadCell:
    """A cell that cannot be used, with the 1-based data-row number users see."""

    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} {self.field}: {self.reason}"


@dataclass(frozen=True)
class Part:
    """``total`` entries made by ``produce``, ``chunk`` at a time."""

    total: int
    produce: Produce
    chunk: int


def fingerprint(manifest: Path, files: Sequence[str | None]) -> str:
    """sha256 of the manifest's bytes and the size and mtime of every file it names."""
    h = hashlib.sha256(manifest.read_bytes())
    seen: dict[str, str] = {}  # a file many rows share is looked at once
    for f in files:
        if f is None:
            continue
        if f not in seen:
            try:
                st = os.stat(f)
                seen[f] = f"{f}|{st.st_size}|{st.st_mtime_ns}\n"
            except OSError:
                seen[f] = f"{f}|missing\n"
        h.update(seen[f].encode())
    return h.hexdigest()[:16]


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts``."""
    blob = json.dumps({"v": CACHE_VERSION, "parts": parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def feature_dir(home: Path, *parts: Any) -> Path:
    """The entry of encoder features keyed by ``parts`` (data fingerprint, model identity,
    preprocessing): ``<home>/cache/features/<key>``, beside the decode cache."""
    return decode_cache_dir(home) / "features" / cache_key(*parts)


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


def build_entry(folder: Path, parts: dict[str, Part],
                progress: Callable[[int], None] | None = None) -> tuple[dict[str, np.ndarray], dict, bool]:
    """The entry ``folder``: read when complete, else made chunk by chunk (resuming an
    interrupted run) and renamed into place. Returns (arrays, status, whether it was made
    now); ``status["notes"]`` holds each part's notes. Caching is best effort: where the disk
    does not take it, the arrays are made in memory."""
    hit = load_entry(folder)
    if hit is not None:
        return (*hit, False)
    try:
        with _locked(folder):
            hit = load_entry(folder)  # another process made it while this one waited
            if hit is not None:
                return (*hit, False)
            _fill(folder, parts, progress)
    except OSError as exc:
        log.warning("cannot write the cache entry %s (%s); computing in memory", folder, exc)
        return (*_in_memory(parts, progress), True)
    hit = load_entry(folder)
    if hit is None:
        return (*_in_memory(parts, progress), True)
    return (*hit, True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Holds ``.<key>.lock`` beside the entry. Once the entry is complete the lock file goes:
    whoever still waits on it, or locks a new one, finds the entry complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f".{folder.name}.lock"
    with open(path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
            path.unlink(missing_ok=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fill(folder: Path, parts: dict[str, Part], progress: Callable[[int], None] | None) -> None:
    partial = folder.parent / f".{folder.name}.partial"
    totals = {name: p.total for name, p in parts.items()}
    state = _read_state(partial)
    if state.get("totals") != totals:  # none, or another data's: start afresh
        shutil.rmtree(partial, ignore_errors=True)
        state = {"totals": totals, "done": {}, "notes": {}, "arrays": {}}
    partial.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        done = state["done"].get(name, 0)
        if progress is not None and done:
            progress(done)  # resumed
        starts = list(range(done, part.total, max(1, part.chunk)))
        if part.total == 0 and name not in state["done"]:
            starts = [0]
        for start in starts:
            end = min(start + max(1, part.chunk), part.total)
            arrays, notes = part.produce(start, end)
            for key, a in arrays.items():
                _write_rows(partial, key, np.asarray(a), start, part.total, state["arrays"])
            state["notes"].setdefault(name, []).extend(notes)
            state["done"][name] = end
            _write_json(partial / "progress.json", state)
            if progress is not None:
                progress(end - start)
    _write_json(partial / "status.json", {"arrays": list(state["arrays"]), "notes": state["notes"]})
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)


def _read_state(partial: Path) -> dict:
    try:
        state = json.loads((partial / "progress.json").read_text())
        if all((partial / f"{k}.npy").is_file() for k in state["arrays"]):
            return state
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}


def _write_rows(partial: Path, key: str, a: np.ndarray, start: int, total: int, arrays: dict) -> None:
    """Writes ``a`` as rows ``start...`` of ``<key>.npy`` (made at its full size on the first
    chunk) with plain file writes: the rows pass through the page cache, not this process."""
    path = partial / f"{key}.npy"
    if key not in arrays:
        if total == 0:
            np.save(path, a[:0])
            offset = 0
        else:
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=a.dtype, shape=(total, *a.shape[1:]))
            offset = int(mm.offset)
            del mm
        arrays[key] = {"dtype": a.dtype.str, "shape": list(a.shape[1:]), "offset": offset}
    spec = arrays[key]
    if list(a.shape[1:]) != spec["shape"]:
        raise ValueError(f"{key}: rows of shape {a.shape[1:]} after rows of shape {tuple(spec['shape'])}")
    if len(a) == 0:
        return
    a = np.ascontiguousarray(a, dtype=np.dtype(spec["dtype"]))
    with open(path, "r+b") as f:
        f.seek(spec["offset"] + start * a[0].nbytes)
        f.write(memoryview(a).cast("B"))


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _in_memory(parts: dict[str, Part], progress: Callable[[int], None] | None) -> tuple[dict[str, np.ndarray], dict]:
    chunks: dict[str, list[np.ndarray]] = {}
    notes: dict[str, list] = {}
    for name, part in parts.items():
        for start in range(0, part.total, max(1, part.chunk)) or [0]:
            end = min(start + max(1, part.chunk), part.total)
            arrays, more = part.produce(start, end)
            for key, a in arrays.items():
                chunks.setdefault(key, []).append(np.asarray(a))
            notes.setdefault(name, []).extend(more)
            if progress is not None:
                progress(end - start)
    return {k: np.concatenate(v) for k, v in chunks.items()}, {"notes": notes}


def chunk_rows(shape: Sequence[int], dtype: Any, floor: int = 64) -> int:
    """Rows per chunk: about :data:`CHUNK_BYTES` of them, at least ``floor``."""
    row = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return max(floor, CHUNK_BYTES // max(1, row))


def decoded_columns(
    folder: Path, columns: dict[str, tuple[Modality, dict, Sequence[str | None], str, Sequence[str]]],
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, IndexedRows], list[BadCell], bool]:
    """Decoded file columns from the cache entry ``folder`` when complete, else decoded now
    (each distinct file once, in threads) and cached. ``columns``: name -> (modality, prep,
    resolved sources, field name in errors, the cells as written). A bad file becomes zeros
    and a :class:`BadCell` for every row naming it.
    Returns (arrays, bad cells, whether it was a cache hit)."""
    codes: dict[str, np.ndarray] = {}
    parts: dict[str, Part] = {}
    for name, (modality, prep, sources, _, _) in columns.items():
        codes[name], uniques = distinct_cells(sources)
        parts[name] = Part(len(uniques), _decoder(name, modality, prep, uniques),
                           chunk_rows(modality.shape(prep), modality.dtype))
    arrays, info, built = build_entry(folder, parts, progress)
    bad: list[BadCell] = []
    for name, (_, _, _, field, shown) in columns.items():
        reasons = {int(k): why for k, why in info["notes"].get(name, [])}
        for r in np.flatnonzero(np.isin(codes[name], list(reasons))):
            bad.append(BadCell(int(r) + 1, field, f"{shown[r]!r}: {reasons[int(codes[name][r])]}"))
    return {name: IndexedRows(arrays[name], codes[name]) for name in columns}, bad, not built


def _decoder(name: str, modality: Modality, prep: dict, uniques: list[Any]) -> Produce:
    """Decodes distinct sources ``start..end-1`` in threads; zeros (and a note) where one fails."""

    def work(k: int) -> tuple[int, np.ndarray | None, str | None]:
        if uniques[k] is None:
            return k, None, None
        try:
            return k, modality.decode(uniques[k], prep), None
        except DecodeError as exc:
            return k, None, str(exc)

    def produce(start: int, end: int) -> tuple[dict[str, np.ndarray], list]:
        out = np.zeros((end - start, *modality.shape(prep)), dtype=modality.dtype)
        notes = []
        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
            for k, arr, err in pool.map(work, range(start, end)):
                if arr is not None:
                    out[k - start] = arr
                elif err is not None:
                    notes.append([k, err])
        return {name: out}, notes

    return produce

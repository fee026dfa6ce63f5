"""From a manifest to the arrays trials train on: checked, decoded once, split, cached.

Every image, audio and video file is decoded and resized once per dataset into ``.npy``
arrays under ``<home>/cache/<key>/``, keyed by the data's fingerprint (manifest bytes, each
file's size and mtime) and the preprocessing settings. A second search on the same data
memory-maps the arrays instead of decoding again. Text is tokenised after the split,
with a vocabulary built from the training rows only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from autofusion.data import decode as dec
from autofusion.data.info import ModalityInfo
from autofusion.data.manifest import read_manifest, resolve_columns
from autofusion.data.splits import NAMES, TRAIN, VAL, assign_splits, parse_split_column
from autofusion.data.text import Vocab
from autofusion.errors import ConfigError, DataError

CACHE_VERSION = 1
FILE_MODALITIES = ("image", "audio", "video")
MIN_ROWS_PER_CLASS = 3  # one for each of train, val and test


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be used, with the 1-based data-row number users see."""

    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} {self.field}: {self.reason}"


@dataclass
class DataMeta:
    """What a model and its logged copy need to know about the data (JSON-serialisable)."""

    task: str
    modalities: list[str]
    target: str
    classes: list[str]
    infos: dict[str, ModalityInfo]
    prep: dict[str, dict]
    vocab: dict | None
    fingerprint: str
    manifest: str
    columns: dict[str, str]
    rows: int
    skipped: int
    bad_rows: list[str] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)
    class_counts: list[int] = field(default_factory=list)
    allow_missing: list[str] = field(default_factory=list)
    split_source: str = "seeded"
    cache_hit: bool = False

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        d = asdict(self)
        d["infos"] = {k: asdict(v) for k, v in self.infos.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "DataMeta":
        d = dict(d)
        d["infos"] = {k: ModalityInfo(**v) for k, v in d["infos"].items()}
        return cls(**d)


@dataclass
class PreparedData:
    """Arrays for every kept row, in manifest order.

    Attributes:
        arrays: per modality: uint8 images ``[N,3,H,W]``, float32 audio ``[N,S]``, uint8
            video ``[N,F,3,H,W]``, int32 token ids ``[N,L]``.
        present: per modality, bool ``[N]``: False where the cell was empty (allowed missing).
        targets: int64 ``[N]`` classes, float32 ``[N,C]`` multi-hot, or float32 ``[N,1]``.
        split: int8 ``[N]``: 0 train, 1 val, 2 test.
        row_ids: the 1-based manifest data row of each kept row.
    """

    arrays: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    targets: np.ndarray
    split: np.ndarray
    row_ids: np.ndarray
    meta: DataMeta

    def indices(self, which: int) -> np.ndarray:
        return np.flatnonzero(self.split == which)


def default_home() -> Path:
    """Where autofusion keeps caches and search state: ``$AUTOFUSION_HOME`` or ``./.autofusion``."""
    return Path(os.environ.get("AUTOFUSION_HOME", ".autofusion")).resolve()


@dataclass
class RowCheck:
    """Every row of a manifest, checked and decoded, before any row is dropped or split.

    What :func:`prepare_data` builds on and ``data inspect`` reports from. Arrays and
    masks cover all rows, in manifest order.

    Attributes:
        manifest: the manifest, resolved.
        df: the manifest as read.
        roles: role -> column.
        present: per modality, bool ``[rows]``: the cell is not empty.
        target: classification, multilabel or regression.
        classes: class names (the label column's name for regression).
        targets: encoded targets of every row (meaningless where the label is bad).
        given: split codes from the split column, -1 where it is empty or absent.
        bad: every problem found, sorted by row.
        arrays: decoded file modalities (zeros where empty or unreadable).
    """

    manifest: Path
    df: pd.DataFrame
    roles: dict[str, str]
    modalities: list[str]
    allow_missing: list[str]
    present: dict[str, np.ndarray]
    target: str
    classes: list[str]
    targets: np.ndarray
    given: np.ndarray
    bad: list[BadRow]
    arrays: dict[str, np.ndarray]
    prep: dict[str, dict]
    fingerprint: str
    cache_hit: bool

    @property
    def bad_rows(self) -> list[int]:
        """The 1-based rows with at least one problem."""
        return sorted({b.row for b in self.bad})


def prepare_data(
    manifest: str | Path,
    space: Any,
    *,
    columns: dict[str, str] | None = None,
    on_bad_rows: str | None = None,
    seed: int = 0,
    home: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedData:
    """Reads, checks, decodes (once, cached) and splits a manifest for ``space``'s modalities."""
    policy = on_bad_rows or space.file.data.on_bad_rows
    if policy not in ("error", "skip"):
        raise ConfigError(f"on_bad_rows must be 'error' or 'skip', but got {policy!r}")
    check = check_rows(manifest, space, columns=columns, home=home, progress=progress)
    if check.bad and policy == "error":
        raise DataError(_bad_rows_message(check.manifest, check.bad, len(check.df)))
    return split_rows(check, space, on_bad_rows=policy, seed=seed)


def check_rows(
    manifest: str | Path,
    space: Any,
    *,
    columns: dict[str, str] | None = None,
    home: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RowCheck:
    """Reads a manifest, finds its columns, parses labels and split values, and decodes every
    file (once, cached), recording each bad row instead of raising.

    Raises:
        DataError: the manifest itself is unusable (missing, unreadable, no label column,
            a bad split value ...).
    """
    manifest = Path(manifest).resolve()
    ds = space.file.data
    modalities = space.modalities
    for m in ds.allow_missing:
        if m not in modalities:
            raise DataError(f"data.allow_missing: {m!r} is not one of the modalities ({', '.join(modalities)})")
    df = read_manifest(manifest)
    roles = resolve_columns(df, manifest, modalities, flag=columns, space=ds.columns)
    given = (parse_split_column(df[roles["split"]], str(manifest)) if "split" in roles
             else np.full(len(df), -1, np.int8))
    bad: list[BadRow] = []

    present = {m: _present_cells(df[roles[m]]) for m in modalities}
    for m in modalities:
        if m not in ds.allow_missing:
            what = "empty text" if m == "text" else "empty cell"
            for i in np.flatnonzero(~present[m]):
                bad.append(BadRow(int(i) + 1, m, f"{what} (allow with data.allow_missing: [{m}])"))
    if set(modalities) <= set(ds.allow_missing):  # otherwise an empty row is already bad above
        nothing = ~np.any(np.stack([present[m] for m in modalities]), axis=0)
        for i in np.flatnonzero(nothing):
            bad.append(BadRow(int(i) + 1, "inputs", "every modality is empty"))
    target, classes, targets, label_bad = _parse_labels(df[roles["label"]], ds, manifest, roles["label"])
    for i, reason in label_bad.items():
        bad.append(BadRow(i + 1, "label", reason))

    prep = {m: space.prep[m].model_dump() for m in modalities}
    fingerprint = data_fingerprint(manifest, df, roles, [m for m in modalities if m in FILE_MODALITIES], present)
    key = _cache_key(fingerprint, roles, prep)
    cache_dir = (home or default_home()) / "cache" / key
    arrays, file_bad, hit = _decoded(cache_dir, df, roles, manifest.parent, modalities, present, prep, progress)
    bad.extend(file_bad)
    order = {f: k for k, f in enumerate([*modalities, "inputs", "label"])}
    bad.sort(key=lambda b: (b.row, order.get(b.field, len(order))))
    return RowCheck(manifest, df, roles, list(modalities), list(ds.allow_missing), present, target, classes,
                    targets, given, bad, arrays, prep, fingerprint, hit)


def split_rows(check: RowCheck, space: Any, *, on_bad_rows: str, seed: int) -> PreparedData:
    """Drops bad rows (``on_bad_rows="skip"``; with ``"error"`` there must be none) and
    classes too small to split, splits the rest and tokenises text."""
    ds = space.file.data
    df, manifest, roles, modalities = check.df, check.manifest, check.roles, check.modalities
    target, classes, targets = check.target, check.classes, check.targets
    if check.bad and on_bad_rows == "error":
        raise DataError(_bad_rows_message(manifest, check.bad, len(df)))
    keep = np.setdiff1d(np.arange(len(df)), np.array(check.bad_rows, dtype=int) - 1)
    if len(keep) == 0:
        raise DataError(f"{manifest}: no usable rows: all {len(df)} rows are bad, e.g. {check.bad[0]}")
    keep, targets, classes, dropped = _check_classes(keep, targets, classes, target, check.given, on_bad_rows,
                                                     manifest, roles["label"])
    skipped = len(df) - len(keep)
    given = check.given[keep]
    try:
        split = assign_splits(given, targets[keep] if target == "classification" else None,
                              ds.val_fraction, ds.test_fraction, seed)
    except DataError as exc:
        raise DataError(f"{manifest}: {exc}") from None
    for code, name in ((TRAIN, "train"), (VAL, "val")):
        if not (split == code).any():
            raise DataError(f"{manifest}: no {name} rows left after the split; add rows or change the split column")
    if "split" not in roles:
        source = "seeded"
    else:
        source = "column" if np.array_equal(split, given) else "column+seeded"

    kept_arrays = {m: (a if len(keep) == len(df) else a[keep]) for m, a in check.arrays.items()}
    kept_present = {m: p[keep] for m, p in check.present.items()}
    prep = check.prep
    infos = {m: _info(m, prep[m]) for m in modalities if m != "text"}
    vocab_json = None
    if "text" in modalities:
        texts = df[roles["text"]].astype("string").fillna("").astype(str).to_numpy()[keep]
        tp = prep["text"]
        vocab = Vocab.build(texts[split == TRAIN], max_vocab=tp["max_vocab"], min_freq=tp["min_freq"], lowercase=tp["lowercase"])
        kept_arrays["text"] = vocab.encode(texts, tp["max_length"])
        vocab_json = vocab.to_json()
        infos["text"] = ModalityInfo("text", vocab_size=len(vocab), max_length=tp["max_length"])
    kept_targets = targets[keep]
    counts = (
        np.bincount(kept_targets[split == TRAIN], minlength=len(classes)).tolist()
        if target == "classification"
        else []
    )
    meta = DataMeta(
        task=space.task, modalities=list(modalities), target=target, classes=list(classes),
        infos=infos, prep=prep, vocab=vocab_json, fingerprint=check.fingerprint, manifest=str(manifest),
        columns=roles, rows=len(df), skipped=skipped, bad_rows=[str(b) for b in check.bad[:20]] + dropped,
        split_counts={n: int((split == c).sum()) for c, n in enumerate(NAMES)}, class_counts=counts,
        allow_missing=list(ds.allow_missing), split_source=source, cache_hit=check.cache_hit,
    )
    return PreparedData(kept_arrays, kept_present, kept_targets, split, keep + 1, meta)


def _present_cells(col: pd.Series) -> np.ndarray:
    s = col.astype("string")
    return (s.notna() & (s.str.strip() != "")).fillna(False).to_numpy(dtype=bool)


def _parse_labels(
    col: pd.Series, ds: Any, manifest: Path, name: str
) -> tuple[str, list[str], np.ndarray, dict[int, str]]:
    """Decides the target kind and encodes the labels; returns (kind, classes, targets,
    {0-based row: why its label is bad})."""
    values = col.tolist()
    ok = np.array([not _is_missing(v) for v in values], dtype=bool)
    bad = {int(i): "empty label" for i in np.flatnonzero(~ok)}
    target = ds.target
    if target == "auto":
        given = [v for v, k in zip(values, ok) if k]
        if ds.label_delimiter or any(isinstance(v, (list, tuple, np.ndarray)) for v in given):
            target = "multilabel"
        elif given and all(_is_number(v) for v in given) and not all(float(v).is_integer() for v in given):
            target = "regression"
        else:
            target = "classification"
    if target == "regression":
        nums = pd.to_numeric(col, errors="coerce").astype("float64").to_numpy()
        for i in np.flatnonzero(ok & ~np.isfinite(nums)):
            bad[int(i)] = f"{values[i]!r} is not a finite number"
        return target, [name], np.nan_to_num(nums).astype(np.float32).reshape(-1, 1), bad
    if target == "multilabel":
        sets = [_label_set(v, ds.label_delimiter) if k else [] for v, k in zip(values, ok)]
        for i, (s, k) in enumerate(zip(sets, ok)):
            if k and not s:
                bad[i] = "empty label list"
        classes = sorted({c for s in sets for c in s}, key=_natural)
        index = {c: i for i, c in enumerate(classes)}
        multi = np.zeros((len(values), len(classes)), dtype=np.float32)
        for i, s in enumerate(sets):
            multi[i, [index[c] for c in s]] = 1.0
        return target, classes, multi, dict(sorted(bad.items()))
    names = [_label_name(v) if k else "" for v, k in zip(values, ok)]
    uniq = sorted({n for n, k in zip(names, ok) if k}, key=_natural)
    index = {c: i for i, c in enumerate(uniq)}
    return target, uniq, np.array([index.get(n, 0) for n in names], dtype=np.int64), bad


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def _label_name(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _natural(name: str) -> tuple:
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def _label_set(v: Any, delimiter: str | None) -> list[str]:
    if isinstance(v, (list, tuple, np.ndarray)):
        return sorted({_label_name(x) for x in v if not _is_missing(x)})
    parts = str(v).split(delimiter) if delimiter else [str(v)]
    return sorted({p.strip() for p in parts if p.strip()})


def _check_classes(
    keep: np.ndarray, targets: np.ndarray, classes: list[str], target: str, given: np.ndarray,
    policy: str, manifest: Path, name: str,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Single class and too-small classes; re-indexes classes after dropping rows."""
    if len(keep) == 0:
        raise DataError(f"{manifest}: no usable rows")
    if target == "multilabel":
        used = targets[keep].any(axis=0)
        if not used.all():
            targets, classes = targets[:, used], [c for c, u in zip(classes, used) if u]
        return keep, targets, classes, []
    if target != "classification":
        return keep, targets, classes, []
    dropped: list[str] = []
    counts = np.bincount(targets[keep], minlength=len(classes))
    needs_split = (given[keep] < 0).any()
    small = [c for c in range(len(classes)) if 0 < counts[c] < MIN_ROWS_PER_CLASS]
    if small and needs_split:
        desc = ", ".join(f"{classes[c]!r} ({counts[c]} rows)" for c in small[:5])
        desc += f" and {len(small) - 5} more" if len(small) > 5 else ""
        if policy == "error":
            raise DataError(
                f"{manifest}: classes with too few rows to split into train/val/test: {desc}; "
                f"each needs at least {MIN_ROWS_PER_CLASS}, or give a split column, or --on-bad-rows skip"
            )
        keep = keep[~np.isin(targets[keep], small)]
        dropped.append(f"dropped classes with under {MIN_ROWS_PER_CLASS} rows: {desc}")
    present_classes = sorted(set(targets[keep].tolist()))
    if len(present_classes) < 2:
        only = classes[present_classes[0]] if present_classes else "none"
        raise DataError(
            f"{manifest}: label column {name!r} has a single class ({only!r}); classification needs at least 2: "
            f"add samples of other classes, or point --columns label=COLUMN at the right column"
        )
    if len(present_classes) < len(classes):
        remap = np.full(len(classes), -1, dtype=np.int64)
        remap[present_classes] = np.arange(len(present_classes))
        targets = remap[targets].clip(min=0)
        classes = [classes[c] for c in present_classes]
    return keep, targets, classes, dropped


def _bad_rows_message(manifest: Path, bad: list[BadRow], total: int) -> str:
    rows = sorted({b.row for b in bad})
    first = "; ".join(str(b) for b in sorted(bad, key=lambda b: b.row)[:3])
    return (
        f"{manifest}: {len(rows)} of {total} rows are bad: {first}"
        f"{' ...' if len(bad) > 3 else ''}; fix them or pass --on-bad-rows skip"
    )


def data_fingerprint(manifest: Path, df: pd.DataFrame, roles: dict[str, str], file_modalities: list[str],
                     present: dict[str, np.ndarray]) -> str:
    """sha256 of the manifest bytes and the size and mtime of every file it names."""
    h = hashlib.sha256(manifest.read_bytes())
    base = manifest.parent
    for m in file_modalities:
        for v, p in zip(df[roles[m]].tolist(), present[m]):
            if not p:
                continue
            path = base / str(v).strip()
            try:
                st = path.stat()
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}|missing\n".encode())
    return h.hexdigest()[:16]


def _cache_key(fingerprint: str, roles: dict[str, str], prep: dict[str, dict]) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "fp": fingerprint, "roles": roles,
                       "prep": {m: p for m, p in prep.items() if m in FILE_MODALITIES}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _decoder(modality: str, prep: dict) -> tuple[Callable[[Any], np.ndarray], tuple[int, ...], Any]:
    if modality == "image":
        s = prep["size"]
        return (lambda src: dec.decode_image(src, s)), (3, s, s), np.uint8
    if modality == "audio":
        n = int(round(prep["sample_rate"] * prep["seconds"]))
        return (lambda src: dec.decode_audio(src, prep["sample_rate"], n)), (n,), np.float32
    f, s = prep["frames"], prep["size"]
    return (lambda src: dec.decode_video(src, f, s)), (f, 3, s, s), np.uint8


def _decoded(
    cache_dir: Path, df: pd.DataFrame, roles: dict[str, str], base: Path, modalities: list[str],
    present: dict[str, np.ndarray], prep: dict[str, dict], progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, np.ndarray], list[BadRow], bool]:
    """Decoded file modalities, from the cache when it is complete, else decoded now and cached."""
    mods = [m for m in modalities if m in FILE_MODALITIES]
    status = cache_dir / "status.json"
    if status.is_file():
        try:
            info = json.loads(status.read_text())
            arrays = {m: np.load(cache_dir / f"{m}.npy", mmap_mode="r") for m in mods}
            return arrays, [BadRow(**b) for b in info["bad"]], True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable cache is rebuilt
    arrays: dict[str, np.ndarray] = {}
    bad: list[BadRow] = []
    total = sum(int(present[m].sum()) for m in mods)
    done = 0
    workers = max(1, min(8, os.cpu_count() or 1))
    for m in mods:
        fn, shape, dtype = _decoder(m, prep[m])
        out = np.zeros((len(df), *shape), dtype=dtype)
        cells = df[roles[m]].tolist()
        todo = [i for i in range(len(df)) if present[m][i]]

        def work(i: int, fn=fn, cells=cells, m=m) -> tuple[int, np.ndarray | None, str | None]:
            raw = str(cells[i]).strip()
            path = Path(raw) if os.path.isabs(raw) else base / raw
            try:
                return i, fn(path), None
            except dec.DecodeError as exc:
                return i, None, f"{raw!r}: {exc}"

        with ThreadPoolExecutor(workers) as pool:
            for i, arr, err in pool.map(work, todo, chunksize=64):
                if err is None:
                    out[i] = arr
                else:
                    bad.append(BadRow(i + 1, m, err))
                done += 1
                if progress and done % 256 == 0:
                    progress(done, total)
        arrays[m] = out
    if progress:
        progress(total, total)
    _write_cache(cache_dir, arrays, bad)
    return arrays, bad, False


def _write_cache(cache_dir: Path, arrays: dict[str, np.ndarray], bad: list[BadRow]) -> None:
    """Writes atomically: a temp folder renamed into place, so a half-written cache is never read."""
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir.parent))
        for m, a in arrays.items():
            np.save(tmp / f"{m}.npy", a)
        (tmp / "status.json").write_text(json.dumps({"bad": [asdict(b) for b in bad]}))
        if cache_dir.exists():
            shutil.rmtree(cache_dir, ignore_errors=True)
        os.replace(tmp, cache_dir)
    except OSError:
        shutil.rmtree(locals().get("tmp", cache_dir.parent / ".none"), ignore_errors=True)  # caching is best effort


def _info(modality: str, prep: dict) -> ModalityInfo:
    if modality == "image":
        return ModalityInfo("image", image_size=prep["size"])
    if modality == "audio":
        return ModalityInfo("audio", sample_rate=prep["sample_rate"],
                            num_samples=int(round(prep["sample_rate"] * prep["seconds"])))
    return ModalityInfo("video", image_size=prep["size"], frames=prep["frames"])

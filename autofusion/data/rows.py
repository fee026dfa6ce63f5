"""Every row of a manifest checked before any row is dropped or split: columns found, labels
parsed, preprocessing settings chosen from the training rows, every file decoded (once,
cached), every problem recorded as a :class:`BadCell` instead of raised."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from autofusion import phases
from autofusion.data.cache import (
    BadCell,
    cache_key,
    decoded_columns,
    fingerprint,
)
from autofusion.data.labels import parse_labels
from autofusion.data.manifest import resolve_columns
from autofusion.data.reading import read_manifest
from autofusion.data.splits import TRAIN, assign_splits, group_keys, parse_split_column
from autofusion.errors import DataError
from autofusion.home import autofusion_home, decode_cache_dir
from autofusion.modalities import MODALITIES, DataChoice
from autofusion.modalities.text import join_fields

PREP_SAMPLE = 400  # training cells looked at to choose preprocessing settings


@dataclass(frozen=True)
class InputSpec:
    """One input of the model: a column (or, for tabular data, a set of columns) of one
    modality; ``joined``: the modality's columns read as one text (``encoders.<m>.layout:
    joined``), an alternative to its one-per-column inputs that a trial picks instead."""

    name: str
    modality: str
    columns: tuple[str, ...]
    joined: bool = False

    def to_json(self) -> dict:
        out = {"name": self.name, "modality": self.modality, "columns": list(self.columns)}
        return {**out, "joined": True} if self.joined else out

    @classmethod
    def from_json(cls, d: dict) -> "InputSpec":
        return cls(d["name"], d["modality"], tuple(d["columns"]), bool(d.get("joined", False)))


def trial_inputs(specs: list[InputSpec], joined: tuple[str, ...] | set[str] = ()) -> list[InputSpec]:
    """The inputs one model reads: for a modality in ``joined``, its joined input; for any
    other, its one-per-column inputs (a joined input is read only by a trial that picks it)."""
    has_joined = {s.modality for s in specs if s.joined}
    return [s for s in specs if s.joined == (s.modality in joined and s.modality in has_joined)]


@dataclass
class RowCheck:
    """Every row of a manifest, checked and decoded, before any row is dropped or split.

    Attributes:
        manifest: the manifest, resolved.
        df: the manifest as read.
        roles: role -> column(s).
        inputs: the model's inputs, in order.
        present: per input, bool ``[rows]``: the cell is not empty.
        raw: per input, the raw cells (text; resolved file paths, None where empty; a frame
            of columns for multi-column inputs).
        target, classes, targets: the label column parsed (targets meaningless where bad).
        given: split codes from the split column, -1 where it is empty or absent.
        bad: every problem found, sorted by row.
        arrays: decoded file inputs (zeros where empty or unreadable).
        prep: per modality, the completed preprocessing settings.
        chosen: the settings chosen from the data, with why.
        groups: the group column's keys (rows of a group stay in one split), or None.
    """

    manifest: Path
    df: pd.DataFrame
    roles: dict[str, list[str]]
    modalities: list[str]
    inputs: list[InputSpec]
    allow_missing: list[str]
    present: dict[str, np.ndarray]
    raw: dict[str, Any]
    target: str
    classes: list[str]
    targets: np.ndarray
    given: np.ndarray
    bad: list[BadCell]
    arrays: dict[str, np.ndarray]
    prep: dict[str, dict]
    chosen: list[DataChoice]
    fingerprint: str
    cache_hit: bool
    groups: np.ndarray | None = None  # group key per row (``--columns group=COL``, ``data.group``)

    @property
    def bad_rows(self) -> list[int]:
        """The 1-based rows with at least one problem."""
        return sorted({b.row for b in self.bad})


def make_inputs(roles: dict[str, list[str]], modalities: list[str], joined: tuple[str, ...] = ()) -> list[InputSpec]:
    """One input per column of a modality (named after the modality when it has one column,
    after the column otherwise); a modality that reads many columns at once is one input. A
    modality in ``joined`` with several columns also gets their joined input (named after the
    modality, or ``<modality>_joined`` when a column has that name)."""
    out: list[InputSpec] = []
    for m in modalities:
        cols = roles.get(m, [])
        if not getattr(MODALITIES.get(m), "one_input_per_column", True) or len(cols) == 1:
            out.append(InputSpec(m, m, tuple(cols)))
            continue
        out.extend(InputSpec(c, m, (c,)) for c in cols)
        if m in joined and len(cols) > 1:
            out.append(InputSpec(m if m not in cols else f"{m}_joined", m, tuple(cols), joined=True))
    names = [i.name for i in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"input names must be unique, but {', '.join(map(repr, dup))} repeat; rename the columns")
    return out


def present_cells(col: pd.Series) -> np.ndarray:
    s = col.astype("string")
    return (s.notna() & (s.str.strip() != "")).fillna(False).to_numpy(dtype=bool)


def resolve_path(base: Path, cell: Any) -> str:
    """A file cell as a path: absolute as written, else under ``base`` (the manifest's folder).
    A relative path written on Windows (``images\\cat.png``) is read with ``/`` where no file
    has the name as written; a ``file://`` URI is its path; a relative path that is no file
    under ``base`` but one under the working folder (``data/images/cat.png`` in
    ``data/train.csv``, written from the project's folder) is that one."""
    raw = str(cell).strip()
    if raw.lower().startswith("file://"):
        from urllib.parse import unquote, urlparse

        raw = unquote(urlparse(raw).path) or raw
    path = raw if os.path.isabs(raw) else str(base / raw)
    if os.path.isabs(raw) or os.path.exists(path):
        return path
    posix = raw.replace("\\", "/") if os.sep == "/" else raw
    for other in (str(base / posix), os.path.abspath(posix)):
        if os.path.exists(other):
            return other
    return path


def check_rows(
    manifest: str | Path,
    space: Any,
    *,
    columns: dict[str, list[str]] | None = None,
    home: Path | None = None,
    seed: int = 0,
    cuda: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RowCheck:
    """Reads a manifest, finds its columns, parses labels and split values, chooses the
    preprocessing settings the space leaves unset, and decodes every file (once, cached).

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
    space_columns = {**ds.columns, **({"group": ds.group} if getattr(ds, "group", None) else {})}
    roles = resolve_columns(df, manifest, modalities, flag=columns, space=space_columns,
                            declared=declared_columns(space))
    groups = group_keys(df[roles["group"][0]]) if "group" in roles else None
    inputs = make_inputs(roles, modalities, joined_modalities(space))
    given = (parse_split_column(df[roles["split"][0]], str(manifest)) if "split" in roles
             else np.full(len(df), -1, np.int8))
    present = {i.name: _present(i, df, space.prep[i.modality].model_dump()) for i in inputs}
    raw = {i.name: _raw(i, df, manifest.parent, present[i.name]) for i in inputs}
    bad = _empty_cells(inputs, present, list(modalities), list(ds.allow_missing))
    label_col = roles["label"][0]
    target, classes, targets, label_bad = parse_labels(df[label_col], ds, manifest, label_col)
    bad.extend(BadCell(r + 1, "label", reason) for r, reason in label_bad.items())

    train_rows = _provisional_train_rows(given, targets, target, {b.row - 1 for b in bad}, ds, seed, groups)
    prep, chosen = choose_prep(space, inputs, raw, present, train_rows, cuda=cuda)
    fp, arrays, file_bad, hit = _decode_files(manifest, df, inputs, raw, prep, home, progress)
    bad.extend(file_bad)
    order = {f: k for k, f in enumerate([*(i.name for i in inputs), "inputs", "label"])}
    bad.sort(key=lambda b: (b.row, order.get(b.field, len(order))))
    return RowCheck(manifest=manifest, df=df, roles=roles, modalities=list(modalities), inputs=inputs,
                    allow_missing=list(ds.allow_missing), present=present, raw=raw, target=target,
                    classes=classes, targets=targets, given=given, bad=bad, arrays=arrays, prep=prep,
                    chosen=chosen, fingerprint=fp, cache_hit=hit, groups=groups)


def _empty_cells(inputs: list[InputSpec], present: dict[str, np.ndarray], modalities: list[str],
                 allow_missing: list[str]) -> list[BadCell]:
    """A problem per empty cell of an input that may not be missing, and per row with no input
    at all (when every modality may be missing)."""
    bad: list[BadCell] = []
    for i in inputs:
        if i.modality not in allow_missing and not i.joined:  # a joined input's columns are checked one by one
            what = "empty text" if i.modality == "text" else "empty cell"
            for r in np.flatnonzero(~present[i.name]):
                bad.append(BadCell(int(r) + 1, i.name, f"{what} (allow with data.allow_missing: [{i.modality}])"))
    if set(modalities) <= set(allow_missing):  # otherwise an empty row is already bad above
        nothing = ~np.any(np.stack([present[i.name] for i in inputs]), axis=0)
        for r in np.flatnonzero(nothing):
            bad.append(BadCell(int(r) + 1, "inputs", "every modality is empty"))
    return bad


def _decode_files(manifest: Path, df: pd.DataFrame, inputs: list[InputSpec], raw: dict[str, Any],
                  prep: dict[str, dict], home: Path | None, progress: Callable[[int], None] | None,
                  ) -> tuple[str, dict[str, np.ndarray], list[BadCell], bool]:
    """Every file input decoded, once: into the cache keyed by the manifest, its files and the
    settings. Returns the fingerprint, the arrays, the unreadable cells and whether the cache hit."""
    files = [p for i in inputs if MODALITIES.get(i.modality).file_based for p in raw[i.name]
             if not _inline(MODALITIES.get(i.modality), p)]
    fp = fingerprint(manifest, files)
    file_inputs = {i.name: (MODALITIES.get(i.modality), prep[i.modality], list(raw[i.name]), i.name,
                            [_shown(MODALITIES.get(i.modality), c) for c in df[i.columns[0]].tolist()])
                   for i in inputs if MODALITIES.get(i.modality).file_based}
    key = cache_key(fp, {k: v[3] for k, v in file_inputs.items()}, {i.name: prep[i.modality] for i in inputs
                                                                     if i.name in file_inputs})
    with phases.during("decode"):  # the search's "decode" phase (autofusion/phases.py)
        arrays, file_bad, hit = decoded_columns(decode_cache_dir(home or autofusion_home()) / key, file_inputs, progress)
    return fp, arrays, file_bad, hit


def declared_columns(space: Any) -> dict[str, list[str]]:
    """The columns a modality's settings name (tabular's ``numeric`` and ``categorical``)."""
    out = {}
    for m in space.modalities:
        declared = getattr(MODALITIES.get(m), "declared_columns", None)
        cols = declared(space.prep[m].model_dump()) if declared is not None else []
        if cols:
            out[m] = cols
    return out


def _inline(mod: Any, cell: Any) -> bool:
    """A file modality's cell that holds its data itself (sensor readings), not a path."""
    inline = getattr(mod, "inline", None)
    return cell is not None and inline is not None and inline(cell)


def _shown(mod: Any, cell: Any) -> str:
    """A cell as written, for messages (readings written in the cell: their start)."""
    text = str(cell).strip()
    return text[:77] + "..." if _inline(mod, cell) and len(text) > 80 else text


def joined_modalities(space: Any) -> tuple[str, ...]:
    """The modalities whose columns the space lets a trial read joined (``encoders.<m>.layout``
    is or may be ``joined``)."""
    out = []
    for m in space.modalities:
        layout = space.file.encoders[m].shared.get("layout")
        values = getattr(layout, "choices", None) or [layout]
        if "joined" in values and getattr(MODALITIES.get(m), "joinable", False):
            out.append(m)
    return tuple(out)


def _present(spec: InputSpec, df: pd.DataFrame, prep: dict) -> np.ndarray:
    mod = MODALITIES.get(spec.modality)
    if mod.empty_is_value(prep):  # an empty text is a text
        return np.ones(len(df), dtype=bool)
    if len(spec.columns) == 1:
        return present_cells(df[spec.columns[0]])
    if spec.joined:
        return np.any([present_cells(df[c]) for c in spec.columns], axis=0)
    return mod.present(df[list(spec.columns)])  # a multi-column modality decides


def _raw(spec: InputSpec, df: pd.DataFrame, base: Path, present: np.ndarray) -> Any:
    """The input's raw cells: resolved paths (None where empty) for files, the text for text
    (a joined input: its fields joined), the columns' frame for a multi-column input."""
    if spec.joined:
        return join_fields(df[list(spec.columns)])
    if len(spec.columns) > 1 or not getattr(MODALITIES.get(spec.modality), "one_input_per_column", True):
        return df[list(spec.columns)].reset_index(drop=True)
    col = df[spec.columns[0]]
    mod = MODALITIES.get(spec.modality)
    if mod.file_based:
        return pd.Series([None if not p else c if _inline(mod, c) else resolve_path(base, c)
                          for c, p in zip(col.tolist(), present)], dtype=object)
    return col.astype("string").fillna("").astype(str).reset_index(drop=True).astype(object)


def _provisional_train_rows(given: np.ndarray, targets: np.ndarray, target: str, bad: set[int], ds: Any,
                            seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """The rows the training split will (almost surely) hold: the split made on the rows known
    to be good before any file is decoded. Preprocessing settings are chosen from these."""
    ok = np.array([i for i in range(len(given)) if i not in bad], dtype=int)
    if len(ok) < 3:
        return ok
    try:
        split = assign_splits(given[ok], targets[ok] if target == "classification" else None,
                              ds.val_fraction, ds.test_fraction, seed, None if groups is None else groups[ok])
    except DataError:
        return ok
    return ok[split == TRAIN]


def choose_prep(space: Any, inputs: list[InputSpec], raw: dict[str, Any], present: dict[str, np.ndarray],
                train_rows: np.ndarray, *, cuda: bool) -> tuple[dict[str, dict], list[DataChoice]]:
    """Per modality, the space's preprocessing settings with the unset ones chosen from a
    sample of the training rows' cells."""
    out: dict[str, dict] = {}
    chosen: list[DataChoice] = []
    rng = np.random.default_rng(0)
    for m in space.modalities:
        mod = MODALITIES.get(m)
        sample: Any = []
        mine = [i for i in inputs if i.modality == m]
        for i in [i for i in mine if i.joined] or mine:  # a joined text is the longest: its lengths decide
            rows = [r for r in train_rows if present[i.name][r]]
            values = raw[i.name]
            if isinstance(values, pd.DataFrame):  # a multi-column input: the frame of its training rows
                sample = values.iloc[rows]
                continue
            sample.extend(values.iloc[r] for r in rows)
        if isinstance(sample, list) and len(sample) > PREP_SAMPLE:
            sample = [sample[k] for k in sorted(rng.choice(len(sample), PREP_SAMPLE, replace=False))]
        prep, why = mod.choose(space.prep[m].model_dump(), sample, cuda=cuda)
        out[m] = prep
        chosen.extend(why)
    return out, chosen

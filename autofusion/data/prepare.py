"""From a manifest to the arrays trials train on: checked, decoded once, split, cached.

Every image, audio and video file is decoded and resized once per dataset into ``.npy``
arrays under ``<home>/cache/<key>/`` (see ``cache.py``), keyed by the data's fingerprint
and the preprocessing settings; a second search memory-maps them. Settings a space leaves
unset are chosen from the training rows first (``rows.choose_prep``). What each modality
learns from data (a text vocabulary, column statistics) is fitted on the training split
only, after the split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from autofusion.data.arrays import IndexedRows, per_distinct, take_rows
from autofusion.data.cache import BadCell
from autofusion.data.labels import check_classes, spellings_note, target_note, target_scale
from autofusion.data.reading import sheet_note
from autofusion.data.rows import InputSpec, RowCheck, check_rows
from autofusion.data.splits import NAMES, TRAIN, VAL, assign_splits
from autofusion.errors import ConfigError, DataError
from autofusion.modalities import MODALITIES, ModalityInfo

__all__ = ["DataMeta", "PreparedData", "prepare_data", "split_rows", "check_rows"]

MIN_TRAIN_ROWS = 5  # fewer training rows than this fit nothing worth testing (LightGBM fails on 1)


@dataclass
class DataMeta:
    """What a model and its logged copy need to know about the data (JSON-serialisable).

    ``prep`` and ``states`` are per modality: the completed preprocessing settings, and
    what was fitted on the training split (``states["text"]["vocab"]``). ``inputs`` are the
    model's inputs (one per column of a modality, or one multi-column input).
    """

    task: str
    modalities: list[str]
    target: str
    classes: list[str]
    infos: dict[str, ModalityInfo]
    prep: dict[str, dict]
    states: dict[str, dict]
    fingerprint: str
    manifest: str
    columns: dict[str, list[str]]
    rows: int
    skipped: int
    inputs: list[dict] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)
    class_counts: list[int] = field(default_factory=list)
    allow_missing: list[str] = field(default_factory=list)
    split_source: str = "seeded"
    cache_hit: bool = False
    chosen: list[str] = field(default_factory=list)
    feature_infos: dict[str, dict] = field(default_factory=dict)
    target_scale: dict = field(default_factory=dict)  # regression: see labels.target_scale
    read_as: str = ""  # how the manifest's columns were read (roles, unused columns), in one line

    def __post_init__(self) -> None:
        if not self.inputs:  # one input per modality, named after it
            self.inputs = [InputSpec(m, m, tuple(self.columns.get(m, [m]))).to_json() for m in self.modalities]

    @property
    def vocab(self) -> dict | None:
        """The text vocabulary fitted on the training split (None without text)."""
        return self.states.get("text", {}).get("vocab")

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    @property
    def input_specs(self) -> list[InputSpec]:
        return [InputSpec.from_json(d) for d in self.inputs]

    @property
    def input_names(self) -> list[str]:
        return [d["name"] for d in self.inputs]

    def modality_of(self, name: str) -> str:
        return next(d["modality"] for d in self.inputs if d["name"] == name)

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
        arrays: per input: uint8 images ``[N,3,H,W]``, float32 audio ``[N,S]``, uint8 video
            ``[N,F,3,H,W]``, int32 token ids ``[N,L]``, ...; mostly :class:`IndexedRows`
            (each distinct file or text once, ``a[sel]`` gathers rows), memory-mapped from
            the cache for files.
        raw: per input, the raw cells (text, resolved file paths, a frame of columns), for
            encoders that read their input their own way (TF-IDF, a pretrained tokenizer).
        present: per input, bool ``[N]``: False where the cell was empty (allowed missing).
        targets: int64 ``[N]`` classes, float32 ``[N,C]`` multi-hot, or float32 ``[N,1]``.
        split: int8 ``[N]``: 0 train, 1 val, 2 test.
        row_ids: the 1-based manifest data row of each kept row.
        features: encoder-specific arrays by feature key (``autofusion.search.features``), as
            :class:`IndexedRows` over the distinct cells.
        extractors: the fitted feature extractors by feature key (logged with the model).
        groups: the group key of each row (rows of a group stay together in any split, the
            folds of bagging too), or None without a group column.
    """

    arrays: dict[str, np.ndarray | IndexedRows]
    present: dict[str, np.ndarray]
    targets: np.ndarray
    split: np.ndarray
    row_ids: np.ndarray
    meta: DataMeta
    raw: dict[str, Any] = field(default_factory=dict)
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    extractors: dict[str, Any] = field(default_factory=dict)
    groups: np.ndarray | None = None

    def indices(self, which: int) -> np.ndarray:
        return np.flatnonzero(self.split == which)


def prepare_data(
    manifest: str | Path,
    space: Any,
    *,
    columns: dict[str, list[str]] | None = None,
    on_bad_rows: str | None = None,
    seed: int = 0,
    home: Path | None = None,
    cuda: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PreparedData:
    """Reads, checks, decodes (once, cached) and splits a manifest for ``space``'s modalities."""
    policy = on_bad_rows or space.file.data.on_bad_rows
    if policy not in ("error", "skip"):
        raise ConfigError(f"on_bad_rows must be 'error' or 'skip', but got {policy!r}")
    check = check_rows(manifest, space, columns=columns, home=home, seed=seed, cuda=cuda, progress=progress)
    return split_rows(check, space, on_bad_rows=policy, seed=seed)  # it stops on a wrong column or bad rows


def split_rows(check: RowCheck, space: Any, *, on_bad_rows: str, seed: int) -> PreparedData:
    """Drops bad rows (``on_bad_rows="skip"``; with ``"error"`` there must be none) and
    classes too small to split, splits the rest, and fits and applies what each modality
    learns from the training rows (the text vocabulary)."""
    ds = space.file.data
    df, manifest, roles = check.df, check.manifest, check.roles
    target, classes, targets = check.target, check.classes, check.targets
    stop_on_wrong_column(check)
    stop_on_wrong_label(check)
    if check.bad and on_bad_rows == "error":
        raise DataError(bad_rows_message(manifest, check.bad, len(df)))
    keep = np.setdiff1d(np.arange(len(df)), np.array(check.bad_rows, dtype=int) - 1)
    if len(keep) == 0:
        raise DataError(f"{manifest}: no usable rows: all {len(df)} rows are bad, e.g. {check.bad[0]}")
    keep, targets, classes, dropped = check_classes(keep, targets, classes, target, check.given, on_bad_rows,
                                                    manifest, roles["label"][0])
    given = check.given[keep]
    try:
        split = assign_splits(given, targets[keep] if target == "classification" else None,
                              ds.val_fraction, ds.test_fraction, seed,
                              None if check.groups is None else check.groups[keep])
    except DataError as exc:
        raise DataError(f"{manifest}: {exc}") from None
    for code, name in ((TRAIN, "train"), (VAL, "val")):
        if not (split == code).any():
            raise DataError(f"{manifest}: no {name} rows left after the split; add rows or change the split column")
    split_counts = {n: int((split == c).sum()) for c, n in enumerate(NAMES)}
    if split_counts["train"] < MIN_TRAIN_ROWS:
        raise DataError(f"{manifest}: {split_counts['train']} training rows after the split, of {len(keep)} "
                        f"usable rows; a model needs at least {MIN_TRAIN_ROWS}: add rows or change the split column")
    source = "seeded" if "split" not in roles else ("column" if np.array_equal(split, given) else "column+seeded")

    whole = len(keep) == len(df)
    arrays = {k: (a if whole else take_rows(a, keep)) for k, a in check.arrays.items()}  # views: no copy
    present = {k: p[keep] for k, p in check.present.items()}
    raw = {k: v.iloc[keep].reset_index(drop=True) for k, v in check.raw.items()}
    states, infos = {}, {}
    for m in check.modalities:
        mod = MODALITIES.get(m)
        names = [i.name for i in check.inputs if i.modality == m]
        if not mod.file_based:
            train_cells = [raw[n].iloc[np.flatnonzero((split == TRAIN) & present[n])] for n in names]
            states[m] = mod.fit(pd.concat(train_cells, ignore_index=True), check.prep[m])
            for n in names:
                arrays[n] = encoded(mod, raw[n], check.prep[m], states[m])
        infos[m] = mod.info(check.prep[m], states.get(m, {}))
    kept_targets = targets[keep]
    scale = target_scale(kept_targets[split == TRAIN]) if target == "regression" else {}
    notes = [target_note(df[roles["label"][0]], target, ds.target),
             spellings_note(df[roles["label"][0]]) if target == "classification" else None]
    chosen = [*filter(None, notes), *(str(c) for c in check.chosen)]
    if scale.get("log"):  # strictly positive, skewed: learned and scored on the log scale (labels.target_scale)
        kept_targets = np.log(np.maximum(kept_targets, np.finfo(np.float32).tiny)).astype(kept_targets.dtype)
        chosen.append(f"target=log({target_name(roles)}) (all training targets > 0, right-skewed: the model learns "
                      "and is scored on the log scale; predictions are mapped back)")
    counts = (np.bincount(kept_targets[split == TRAIN], minlength=len(classes)).tolist()
              if target == "classification" else [])
    meta = DataMeta(
        task=space.task, modalities=list(check.modalities), target=target, classes=list(classes), infos=infos,
        prep=check.prep, states=states, fingerprint=check.fingerprint, manifest=str(manifest), columns=roles,
        rows=len(df), skipped=len(df) - len(keep), inputs=[i.to_json() for i in check.inputs],
        bad_rows=[str(b) for b in check.bad[:20]] + dropped,
        split_counts=split_counts, class_counts=counts,
        allow_missing=list(ds.allow_missing), split_source=source, cache_hit=check.cache_hit,
        chosen=chosen,
        target_scale=scale,
        read_as=read_as(manifest, df, roles, target, classes, split_counts, source),
    )
    return PreparedData(arrays, present, kept_targets, split, keep + 1, meta, raw=raw,
                        groups=None if check.groups is None else check.groups[keep])


def encoded(mod: Any, cells: Any, prep: dict, state: dict) -> np.ndarray | IndexedRows:
    """A modality's arrays for raw cells (text token ids), each distinct cell encoded once."""
    return per_distinct(cells, lambda c: {"x": mod.encode(c, prep, state)})["x"]


def read_as(manifest: Path, df: pd.DataFrame, roles: dict[str, list[str]], target: str, classes: list[str],
            counts: dict[str, int], source: str) -> str:
    """One line: the rows and their split, the label and what it is, each modality's columns,
    and the columns nothing reads (a search prints it before its trials)."""
    used = {c for cols in roles.values() for c in cols}
    kind = f"{target}, {len(classes)} classes" if target != "regression" else target
    parts = [f"label {roles['label'][0]} ({kind})",
             *(f"{r} {', '.join(c)}" for r, c in roles.items() if r not in ("label", "split", "group"))]
    how = {"seeded": "seeded split", "column": f"split column {roles.get('split', ['?'])[0]}",
           "column+seeded": f"split column {roles.get('split', ['?'])[0]}, the rest seeded"}.get(source, source)
    skipped = len(df) - sum(counts.values())
    sheet = sheet_note(df)
    line = (f"{Path(manifest).name}{f' ({sheet})' if sheet else ''}: {len(df)} rows "
            f"({f'{skipped} skipped; ' if skipped else ''}"
            f"train {counts.get('train', 0)} · val {counts.get('val', 0)} · test {counts.get('test', 0)}, {how}); "
            + "; ".join(parts))
    if roles.get("group"):
        line += f"; rows grouped by {roles['group'][0]}"
    unused = [str(c) for c in df.columns if c not in used]
    if unused:
        line += f"; not used: {', '.join(unused)}"
    return line + ". Change with --columns ROLE=COL,... (or --target)"


def target_name(roles: dict) -> str:
    """The label column's name, for messages."""
    label = roles.get("label") or ["target"]
    return str(label[0] if isinstance(label, (list, tuple)) else label)


def stop_on_wrong_column(check: RowCheck) -> None:
    """Stops when a file input is no such input: not one of its filled cells could be read (a
    column of texts named as the images, a folder of the wrong files). The column, not the
    rows, is then what to fix, whatever ``on_bad_rows`` says."""
    for spec in check.inputs:
        mod = MODALITIES.get(spec.modality)
        filled = int(check.present[spec.name].sum())
        if not mod.file_based or filled < 2:
            continue
        cells = [b for b in check.bad if b.field == spec.name]
        if len(cells) < filled:
            continue
        raise DataError(f"{check.manifest}: none of the {filled} cells of column {', '.join(spec.columns)!r} "
                        f"(read as {spec.modality}) could be read, e.g. {cells[0]}; check that the files are "
                        "where the manifest says (relative paths start at its folder) and that --columns "
                        f"{spec.modality}=COLUMN names the {spec.modality} column")


DISTINCT_LABELS = 0.5  # classes past this share of the rows (20 or more): no label column


def stop_on_wrong_label(check: RowCheck) -> None:
    """Stops when the label column cannot be one: no row has a label, or nearly every row has a
    class of its own (a file path, a name, an id named as the label). The column is then what
    to fix, whatever ``on_bad_rows`` says (skipping the rows would leave nothing to learn)."""
    col = check.roles["label"][0]
    rows = len(check.df)
    labels = [b for b in check.bad if b.field == "label"]
    if labels and len({b.row for b in labels}) == rows:
        raise DataError(f"{check.manifest}: no row has a usable label in column {col!r} (e.g. {labels[0]}); "
                        "point --columns label=COLUMN at the label column")
    if check.target == "classification" and rows >= 20 and len(check.classes) > DISTINCT_LABELS * rows:
        raise DataError(f"{check.manifest}: column {col!r} holds {len(check.classes)} different labels in {rows} "
                        f"rows (e.g. {check.classes[0]!r}), too many to be classes; point --columns label=COLUMN "
                        "at the label column, or pass --target regression if they are numbers")


def bad_rows_message(manifest: Path, bad: list[BadCell], total: int) -> str:
    rows = sorted({b.row for b in bad})
    first = "; ".join(str(b) for b in sorted(bad, key=lambda b: b.row)[:3])
    return (
        f"{manifest}: {len(rows)} of {total} rows are bad: {first}"
        f"{' ...' if len(bad) > 3 else ''}; fix them or pass --on-bad-rows skip"
    )

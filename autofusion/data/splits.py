"""Train/val/test assignment: a user's split column is honoured; otherwise a seeded split,
stratified by class where the target allows it, and by group when the manifest has a group
column (rows of one patient, speaker or reused file stay in one split) (scikit-learn)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from autofusion.errors import DataError

TRAIN, VAL, TEST = 0, 1, 2
NAMES = ("train", "val", "test")
ALIASES = {
    "train": TRAIN, "training": TRAIN,
    "val": VAL, "valid": VAL, "validation": VAL, "dev": VAL,
    "test": TEST, "testing": TEST, "holdout": TEST,
}


def parse_split_column(values: pd.Series, where: str) -> np.ndarray:
    """Split names -> codes; -1 where the cell is empty (those rows are assigned later)."""
    out = np.full(len(values), -1, dtype=np.int8)
    for i, v in enumerate(values.tolist()):
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
            continue
        code = ALIASES.get(str(v).strip().lower())
        if code is None:
            raise DataError(
                f"{where}: split value {v!r} in row {i + 1}; use train, val or test "
                f"(or {', '.join(a for a in ALIASES if a not in NAMES)})"
            )
        out[i] = code
    return out


def assign_splits(
    given: np.ndarray,
    strata: np.ndarray | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Fills unassigned rows (-1 in ``given``) with a seeded split.

    Rows without a split get train/val/test in the given fractions; when the split column
    left val or test empty, they are carved out of the unassigned-or-train rows instead.
    With ``groups`` (one value per row: a patient, a speaker, a file reused by many rows)
    every group stays in one split: a row whose group already has a given split joins it,
    and the rest are split by group (scikit-learn's ``StratifiedGroupKFold``, or
    ``GroupShuffleSplit`` without strata), so the fractions hold only roughly.
    """
    codes = given.copy()
    if groups is not None:
        codes = _join_given_groups(codes, groups)
    free = np.flatnonzero(codes < 0)
    if len(free) == 0:
        pool = np.flatnonzero(codes == TRAIN)
        need_val, need_test = not (codes == VAL).any(), not (codes == TEST).any()
        if not (need_val or need_test):
            return codes
        fr_val = val_fraction if need_val else 0.0
        fr_test = test_fraction if need_test else 0.0
    else:
        pool, fr_val, fr_test = free, val_fraction, test_fraction
        codes[pool] = TRAIN
    rest = _split_off(pool, strata, fr_test, seed, "test", groups)
    codes[rest[1]] = TEST
    if fr_val > 0:
        tr_val = _split_off(rest[0], strata, fr_val / max(1e-9, 1 - fr_test), seed + 1, "val", groups)
        codes[tr_val[1]] = VAL
    return codes


def group_keys(values: pd.Series) -> np.ndarray:
    """A group column's cells as group keys; an empty cell is a group of its own row."""
    out = []
    for i, v in enumerate(values.tolist()):
        empty = v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or not str(v).strip()
        out.append(f"\0row {i}" if empty else str(v).strip())
    return np.array(out, dtype=object)


def _join_given_groups(codes: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Unassigned rows of a group whose given rows all share one split join that split."""
    known: dict[object, set[int]] = {}
    for g, c in zip(groups[codes >= 0], codes[codes >= 0]):
        known.setdefault(g, set()).add(int(c))
    out = codes.copy()
    for i in np.flatnonzero(codes < 0):
        here = known.get(groups[i])
        if here is not None and len(here) == 1:
            out[i] = next(iter(here))
    return out


def _split_off(
    idx: np.ndarray, strata: np.ndarray | None, fraction: float, seed: int, name: str,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    if fraction <= 0 or len(idx) == 0:
        return idx, idx[:0]
    if groups is not None:
        return _split_off_groups(idx, strata, fraction, seed, name, groups[idx])
    n_out = max(1, int(round(len(idx) * fraction)))
    if n_out >= len(idx):
        raise DataError(
            f"too few rows ({len(idx)}) to split off a {name} set ({n_out} rows) and keep training rows; "
            f"add rows, lower data.{name}_fraction or give a split column"
        )
    strat = None
    if strata is not None:
        s = strata[idx]
        _, counts = np.unique(s, return_counts=True)
        if counts.min() >= 2 and n_out >= len(counts) and len(idx) - n_out >= len(counts):
            strat = s
    from sklearn.model_selection import (
        train_test_split,  # here: scikit-learn takes 1.6 s to import
    )

    keep, out = train_test_split(idx, test_size=n_out, random_state=seed, stratify=strat)
    return np.sort(keep), np.sort(out)


def _split_off_groups(idx: np.ndarray, strata: np.ndarray | None, fraction: float, seed: int, name: str,
                      groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_split_off`` that keeps each group on one side: one fold of a seeded
    ``StratifiedGroupKFold`` with about ``1 / fraction`` folds when the strata allow it, else
    a ``GroupShuffleSplit`` of ``fraction`` of the groups."""
    import warnings

    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    n_out = max(1, int(round(n_groups * fraction)))
    if n_out >= n_groups:
        raise DataError(
            f"too few groups ({n_groups}) to split off a {name} set ({n_out} groups) and keep training groups; "
            f"add rows of other groups, lower data.{name}_fraction or give a split column"
        )
    folds = max(2, int(round(1 / fraction)))
    if strata is not None and n_groups >= folds:
        with warnings.catch_warnings():  # "the least populated class has fewer members than n_splits"
            warnings.simplefilter("ignore")
            cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            keep, out = next(cv.split(idx, strata[idx], groups))
    else:
        cv = GroupShuffleSplit(n_splits=1, test_size=n_out, random_state=seed)
        keep, out = next(cv.split(idx, groups=groups))
    if len(out) == 0 or len(keep) == 0:
        raise DataError(f"could not split off a {name} set by group; add rows of other groups or give a split column")
    return np.sort(idx[keep]), np.sort(idx[out])

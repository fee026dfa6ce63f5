"""Train/val/test assignment: a user's split column is honoured; otherwise a seeded split,
stratified by class where the target allows it (scikit-learn)."""

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
) -> np.ndarray:
    """Fills unassigned rows (-1 in ``given``) with a seeded split.

    Rows without a split get train/val/test in the given fractions; when the split column
    left val or test empty, they are carved out of the unassigned-or-train rows instead.
    """
    codes = given.copy()
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
    rest = _split_off(pool, strata, fr_test, seed, "test")
    codes[rest[1]] = TEST
    if fr_val > 0:
        tr_val = _split_off(rest[0], strata, fr_val / max(1e-9, 1 - fr_test), seed + 1, "val")
        codes[tr_val[1]] = VAL
    return codes


def _split_off(
    idx: np.ndarray, strata: np.ndarray | None, fraction: float, seed: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    if fraction <= 0 or len(idx) == 0:
        return idx, idx[:0]
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
    from sklearn.model_selection import train_test_split  # here: scikit-learn takes 1.6 s to import

    keep, out = train_test_split(idx, test_size=n_out, random_state=seed, stratify=strat)
    return np.sort(keep), np.sort(out)

"""Labels: the target kind (classification, multi-label, regression) decided from the label
column, labels encoded, and classes too small to split found."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autofusion.data.numbers import to_numbers
from autofusion.errors import DataError

MIN_ROWS_PER_CLASS = 3  # one for each of train, val and test


def parse_labels(
    col: pd.Series, ds: Any, manifest: Path, name: str
) -> tuple[str, list[str], np.ndarray, dict[int, str]]:
    """Decides the target kind and encodes the labels; returns (kind, classes, targets,
    {0-based row: why its label is bad}).

    With ``data.target: auto``: lists (or a delimiter, given or found: :func:`delimiter_of`)
    are multi-label; numbers are a regression when some have fractions or there are too many
    distinct ones to be classes (over 30 and over a tenth of the rows, as prices are); anything
    else is classes."""
    values = col.tolist()
    ok = np.array([not _is_missing(v) for v in values], dtype=bool)
    bad = {int(i): "empty label" for i in np.flatnonzero(~ok)}
    target, delimiter = ds.target, ds.label_delimiter
    given = [v for v, k in zip(values, ok) if k]
    if target == "auto":
        if delimiter or any(isinstance(v, (list, tuple, np.ndarray)) for v in given):
            target = "multilabel"
        elif given and _regression(given):
            target = "regression"  # fractions, or too many distinct whole numbers to be classes (prices)
        elif (delimiter := delimiter_of(given)) is not None:
            target = "multilabel"  # drama|comedy: labels, not a class "drama|comedy"
        else:
            target = "classification"
    if target == "regression":
        nums = to_numbers(col)
        wrong = np.flatnonzero(ok & ~np.isfinite(nums))
        if ds.target == "regression" and len(wrong) > ok.sum() / 2:
            raise DataError(f"{manifest}: target regression, but {len(wrong)} of {int(ok.sum())} labels in column "
                            f"{name!r} are not numbers (e.g. {values[wrong[0]]!r}); drop --target regression "
                            "(data.target) or point --columns label=COLUMN at a numeric column")
        for i in wrong:
            bad[int(i)] = f"{values[i]!r} is not a finite number"
        return target, [name], np.nan_to_num(nums).astype(np.float32).reshape(-1, 1), bad
    if target == "multilabel":
        delimiter = delimiter or delimiter_of(given, found=False)  # a model's multi-label strings, read again
        sets = [_label_set(v, delimiter) if k else [] for v, k in zip(values, ok)]
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
    merged = spellings(names, ok)
    names = [merged.get(n, n) for n in names]
    uniq = sorted({n for n, k in zip(names, ok) if k}, key=_natural)
    index = {c: i for i, c in enumerate(uniq)}
    return target, uniq, np.array([index.get(n, 0) for n in names], dtype=np.int64), bad


def spellings(names: list[str], ok: Any = None) -> dict[str, str]:
    """Class names written in several cases (``Positive``, `` positive ``, ``POSITIVE``): each
    other spelling -> the one most rows use (on a tie, the first in sort order), which names the
    class. Hand-typed labels differ so by mistake far more often than two classes do."""
    from collections import Counter

    counts = Counter(n for n, k in zip(names, ok if ok is not None else [True] * len(names)) if k and n)
    groups: dict[str, list[str]] = {}
    for n in sorted(counts):
        groups.setdefault(n.casefold(), []).append(n)
    out = {}
    for group in groups.values():
        main = min(group, key=lambda n: (-counts[n], n))
        out.update({n: main for n in group if n != main})
    return out


def spellings_note(col: pd.Series) -> str | None:
    """The line the search prints when it read differently cased labels as one class."""
    names = [_label_name(v) for v in col.tolist() if not _is_missing(v)]
    merged = spellings(names)
    if not merged:
        return None
    counts = pd.Series(names).value_counts()
    parts = [f"{n!r} ({counts[n]} row{'s' if counts[n] != 1 else ''}) as {main!r} ({counts[main]})"
             for n, main in merged.items()]
    return f"labels written in another case are one class: {', '.join(parts[:5])}"


def target_note(col: pd.Series, target: str, asked: str) -> str | None:
    """The line the search prints about its target kind before the trials: what was asked
    (``--target`` or ``data.target``); when delimited labels were split (``drama|comedy``), how
    to keep each combination a class instead; when a few whole numbers were read as classes
    (ratings 1-5), how to predict them as numbers instead; None when there is nothing to say."""
    if asked != "auto":
        return f"target={target} (asked for: --target or data.target)"
    given = [v for v in col.tolist() if not _is_missing(v)]
    d = delimiter_of(given) if target == "multilabel" else None
    if d is not None:
        combos = {v.strip() for v in given}
        parts = {p.strip() for v in combos for p in v.split(d)}
        return (f"target=multilabel (labels split at {d!r}: {len(parts)} labels in {len(combos)} combinations; "
                "--target classification keeps each combination a class)")
    if target != "classification":
        return None
    if given and all(_is_number(v) or (isinstance(v, str) and _natural(v.strip())[0] == 0) for v in given):
        nums = sorted({float(v) for v in given})
        if len(nums) <= 2:
            return None
        return (f"target=classification ({len(nums)} distinct whole numbers, {nums[0]:g} to {nums[-1]:g}, read as "
                "classes; --target regression predicts them as numbers)")
    return None


DELIMITERS = ("|", ";", ",")  # what separates the labels of a multi-label cell, most specific first
DELIMITED_SHARE = 0.1  # labels that must hold the delimiter for it to be found


def delimiter_of(given: list[Any], found: bool = True) -> str | None:
    """The delimiter of multi-label strings (``drama|comedy``): the first of ``DELIMITERS``
    in at least ``DELIMITED_SHARE`` of the labels whose parts, all non-empty, are fewer than
    the distinct labels (a handful of labels in many combinations; ``New York, NY`` as a city
    is one class: its parts are as many as its cities). ``found=False``: any delimiter a label
    holds (labels already known to be multi-label)."""
    texts = [v.strip() for v in given if isinstance(v, str)]
    if not texts or len(texts) < len(given):
        return None
    for d in DELIMITERS:
        held = [t for t in texts if d in t]
        if not found and held:
            return d
        if len(held) < DELIMITED_SHARE * len(texts):
            continue
        parts = [p.strip() for t in texts for p in t.split(d)]
        if all(parts) and len(set(parts)) < len(set(texts)):
            return d
    return None


def _regression(given: list[Any]) -> bool:
    """Numbers with fractions, or more distinct whole numbers than classes could be (prices):
    numbers as the manifest typed them, or strings that are all written numbers with a currency
    or grouped thousands (``$350,000``), which pandas leaves as strings."""
    if all(_is_number(v) for v in given):
        nums = np.asarray(given, dtype=np.float64)
    elif all(isinstance(v, str) for v in given) and any(not _plain(v) for v in given):
        nums = to_numbers(pd.Series(given, dtype=object))
        if not np.isfinite(nums).all():
            return False
    else:
        return False
    return bool(not np.all(nums == np.round(nums)) or len(set(nums.tolist())) > max(30, len(given) // 10))


def _plain(v: str) -> bool:
    """A string pandas reads as a number itself (``12``, ``3.5``)."""
    try:
        float(v)
    except ValueError:
        return False
    return True


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


def check_classes(
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
        desc = ", ".join(f"{classes[c]!r} ({counts[c]} row{'s' if counts[c] != 1 else ''})" for c in small[:5])
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



def target_scale(train_targets: np.ndarray) -> dict:
    """The training targets' mean and standard deviation (JSON), for a regression model whose
    head predicts standardised targets and maps them back (``models.build.TargetScale``), so
    that predictions, metrics and the loss are on the targets' own scale while the network
    works near zero whatever the unit (house prices in dollars: without it, R2 0.37-0.46
    instead of 0.52-0.63 on houses' test split).

    ``log`` is True for strictly positive, right-skewed targets (:func:`log_target`: prices,
    sizes, durations, counts that never reach 0); mean and standard deviation are then those of
    their logarithm, the model learns and is scored on the log scale, and predictions are
    mapped back with exp (``serving.pyfunc.output_frame``). Errors on such targets are
    relative (a $50,000 miss is large on a $100,000 house and small on a $2,000,000 one), which
    a squared loss on the log scale measures; on the dollar scale a few expensive rows dominate
    the loss and the validation metric. Measured on houses (the hand-built model, 3 seeds):
    test R2 on the log price 0.61 against 0.24 trained on dollars, R2 on dollars 0.46 against
    0.36, and no negative prices (an earlier measurement with other defaults found no gain).
    """
    y = np.asarray(train_targets, dtype=np.float64).reshape(-1)
    y = y[np.isfinite(y)]
    log = log_target(y)
    if log:
        y = np.log(y)
    std = float(y.std()) if len(y) > 1 else 0.0
    return {"mean": float(y.mean()) if len(y) else 0.0, "std": std if std > 0 else 1.0, "log": log}


LOG_SKEW = 1.0  # skewness from which strictly positive targets are learned on the log scale


def log_target(values: np.ndarray) -> bool:
    """Whether numeric targets are learned on the log scale: one column, all finite values
    above 0 and right-skewed (sample skewness >= 1, e.g. 3.7 for house prices, where their
    logarithm's is -0.6). Symmetric positive targets (temperatures in kelvin, scores on a
    scale) and targets that reach 0 stay on their own scale."""
    y = np.asarray(values, dtype=np.float64)
    if y.ndim > 1 and y.shape[1] != 1:
        return False
    y = y.reshape(-1)
    y = y[np.isfinite(y)]
    if len(y) < 3 or y.min() <= 0:
        return False
    std = y.std()
    return bool(std > 0 and float(np.mean(((y - y.mean()) / std) ** 3)) >= LOG_SKEW)

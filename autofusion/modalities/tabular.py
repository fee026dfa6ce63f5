"""Tabular data: a set of numeric and categorical manifest columns (clinical fields, prices
and brands, rooms and areas) read as ONE input of the model.

Which columns, and of which kind, comes from the space (``modalities: tabular: {numeric:
[...], categorical: [...]}``), ``--columns tabular=price,brand``, or the data: tabular takes
every column no other role took that holds numbers, few distinct strings, or one-token codes
that repeat across rows (brands, shop codes; never an id).
Numbers are numeric unless they are a handful of distinct whole numbers (flags, codes) or
whole numbers in a column named like a code (``zipcode``, ``postal_code``, ``store_id``).

What is learned on the training rows (JSON, saved with the model): each numeric column's
mean and standard deviation (of its logarithm when its training values are all above 0
and right-skewed: areas, prices, counts), each categorical column's vocabulary. A row
becomes one float32 vector: standardised numbers (0 where missing), one missing indicator per number,
and one category id per categorical column (0 missing, 1 unknown: a category not seen in
training, e.g. at predict time, 2.. the known ones).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from autofusion.data.labels import log_target
from autofusion.data.numbers import decimal_mark, is_marked_missing, to_numbers, unit_of
from autofusion.modalities.base import (
    MODALITIES,
    DataChoice,
    Modality,
    ModalityInfo,
    PrepSettings,
    register_modality,
)

MISSING, UNKNOWN = 0, 1  # category ids; known categories start at 2
FEW_INTEGERS = 4  # whole-number columns with at most this many distinct values are categorical
MAX_CATEGORIES = 1000  # distinct strings a column may have to be inferred categorical ...
CATEGORY_SHARE = 0.2  # ... and at most this share of its non-empty rows
SEPARATED_SHARE = 0.3  # strings this share of which hold a separator are names or lists (text), not codes
REPEATED_SHARE = 0.5  # one-token codes past that share are still categories when each repeats on average
PROBE = 500  # cells a column's numbers are tried on before all of them are read
CLIP = 10.0  # standardised numbers are clipped to [-CLIP, CLIP] (an outlier at predict time)
# 2021-03-04, 04/03/2021, 04.03.2021 10:00 (a four-digit year first or last: 1.5.3 is a version)
DATE = re.compile(r"^(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})([ T]|$)")
CODE_NAME = re.compile(r"(^|[_\W])(zip|zipcode|postcode|postal|code|id)($|[_\W])|zip|postcode|code$", re.I)


class TabularPrep(PrepSettings):
    """numeric, categorical: the columns of each kind (None: inferred from the training rows);
    max_categories: the most frequent categories kept per column (the rest are unknown);
    min_frequency: categories seen fewer times in the training rows are unknown."""

    numeric: list[str] | None = None
    categorical: list[str] | None = None
    max_categories: int = Field(1000, ge=1)
    min_frequency: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _disjoint(self) -> "TabularPrep":
        both = sorted(set(self.numeric or []) & set(self.categorical or []))
        if both:
            raise ValueError(f"a column is either numeric or categorical, but {', '.join(map(repr, both))} is in both")
        return self


def is_missing(v: Any) -> bool:
    """None, NaN, pd.NA or a blank string."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return True
    return isinstance(v, str) and not v.strip()


def category(v: Any) -> str | None:
    """A cell as a category name: ``3``, ``3.0`` and ``"3"`` are the same; None when missing."""
    if is_missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def numbers(col: pd.Series, mark: str | None = None, unit: str | None = None) -> np.ndarray:
    """A column as float64, NaN where missing or not a number. A date or time (``2021-03-04``,
    ``04/03/2021 10:00``, a Parquet timestamp) is its nanoseconds since 1970, so a date column
    means the same read from a CSV's strings or a Parquet file's timestamps; a number written
    with a currency, grouped thousands or a percent sign (``$1,234.50``) is that number, with
    the decimal ``mark`` and ``unit`` given (a fitted column's) or decided from the column
    (``autofusion.data.numbers``: ``120 min`` is 120 in a column of minutes)."""
    series = pd.Series(col)
    if pd.api.types.is_numeric_dtype(series.dtype):  # numbers already (a Parquet or typed column): no cell to parse
        return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
    cells = pd.Series(col, dtype=object).map(lambda v: None if is_missing(v) else v)
    dated = cells.map(is_time).astype(bool)
    x = to_numbers(cells.where(~dated, None), mark, unit)
    if dated.any():
        x[dated.to_numpy()] = [_nanoseconds(v) for v in cells[dated]]
    return x


def is_time(v: Any) -> bool:
    """A date or a time: a datetime, a date, or a string that starts like one (``DATE``)."""
    return isinstance(v, (datetime.date, np.datetime64)) or (isinstance(v, str) and bool(DATE.match(v.strip())))


def _nanoseconds(v: Any) -> float:
    """A date or time as nanoseconds since 1970 (UTC when it has a time zone); NaN if unreadable."""
    try:
        t = pd.Timestamp(v.strip() if isinstance(v, str) else v)
    except (ValueError, TypeError, OverflowError):
        return float("nan")
    return float("nan") if pd.isna(t) else float(t.value)


def _file_suffixes() -> frozenset[str]:
    return frozenset().union(*(m.extensions for _, m in MODALITIES.items() if m.file_based))


def column_kind(col: pd.Series, *, strict: bool = True) -> str | None:
    """``numeric``, ``categorical``, or None where the column is no tabular field (free text,
    file paths, lists, ids, nothing at all). ``strict=False`` (a column the user named)
    makes any string column categorical."""
    values = [v for v in pd.Series(col, dtype=object).tolist() if not is_missing(v)]
    if not values:
        return None if strict else "numeric"
    if any(isinstance(v, (list, tuple, dict, np.ndarray)) for v in values):
        return None if strict else "categorical"
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return "categorical"
    written = [v for v in values if not is_marked_missing(v)]  # "-", "n/a": a missing number
    probe = written[:: max(1, len(written) // PROBE)]  # a text column fails on a sample, not on every cell
    if written and np.isfinite(numbers(pd.Series(probe, dtype=object))).all() and np.isfinite(
            nums := numbers(pd.Series(written, dtype=object))).all():
        whole = bool(np.all(nums == np.round(nums)))
        return "categorical" if whole and len(np.unique(nums)) <= FEW_INTEGERS else "numeric"
    if not strict:
        return "categorical"
    texts = [str(v).strip() for v in values]
    suffixes = _file_suffixes()
    if sum(Path(t).suffix.lower() in suffixes for t in texts) >= 0.5 * len(texts) or any(t.startswith("[") for t in texts):
        return None
    distinct = len(set(texts))
    if distinct <= category_limit(len(texts)):
        return "categorical"
    return "categorical" if repeated_codes(texts, distinct) else None


def repeated_codes(texts: list[str], distinct: int) -> bool:
    """Many distinct one-token strings that repeat across rows (brands, shop or model codes:
    ``brand_17``): categories, though too many for :func:`category_limit`. Identifiers (a value
    per row) do not repeat; names and tag lists hold separators and are text."""
    dates = sum(map(is_time, texts)) / len(texts)
    return separated_share(texts) < SEPARATED_SHARE and dates < 0.5 and distinct <= REPEATED_SHARE * len(texts)


def separated_share(texts: list[str]) -> float:
    """The share of strings with a space, comma, semicolon or bar in them (names, lists)."""
    return sum(any(ch in t for ch in " ,;|") for t in texts) / len(texts)


def category_limit(rows: int) -> int:
    """The most distinct strings a column of ``rows`` non-empty cells may have to be read as
    categories; a column with more is free text (names, titles) or an identifier."""
    return max(2, min(MAX_CATEGORIES, int(CATEGORY_SHARE * rows)))


@register_modality
class TabularModality(Modality):
    name = "tabular"
    Prep = TabularPrep
    dtype = np.float32
    one_input_per_column = False
    claims_rest = True

    def declared_columns(self, prep: dict) -> list[str]:
        """The columns the space's settings name (they are the tabular input when given)."""
        return [*(prep.get("numeric") or []), *(prep.get("categorical") or [])]

    def choose(self, prep: dict, sample: Any, *, cuda: bool) -> tuple[dict, list[DataChoice]]:
        """Sorts the input's columns into numeric and categorical: as declared, else by what
        the training rows hold."""
        frame = sample if isinstance(sample, pd.DataFrame) else pd.DataFrame()
        num, cat = list(prep.get("numeric") or []), list(prep.get("categorical") or [])
        guessed = [c for c in frame.columns if c not in num and c not in cat]
        if not guessed:
            return {**prep, "numeric": num, "categorical": cat}, []
        kinds = {c: column_kind(frame[c], strict=False) for c in guessed}
        codes = [c for c in guessed if kinds[c] == "numeric" and is_code(frame[c])]
        new_num = [c for c in guessed if kinds[c] == "numeric" and c not in codes]
        new_cat = [c for c in guessed if kinds[c] == "categorical"]
        chosen = []
        if new_num:
            chosen.append(DataChoice("tabular.numeric", new_num, "numbers in the training rows"))
        if new_cat:
            chosen.append(DataChoice("tabular.categorical", new_cat, f"strings, or at most {FEW_INTEGERS} distinct "
                                                                  "whole numbers, in the training rows"))
        if codes:
            chosen.append(DataChoice("tabular.categorical", codes, "whole numbers in a column named like a code"))
            new_cat += codes
        return {**prep, "numeric": num + new_num, "categorical": cat + new_cat}, chosen

    def defaults(self, prep: dict) -> dict:
        return {**prep, "numeric": list(prep.get("numeric") or []), "categorical": list(prep.get("categorical") or [])}

    def shape(self, prep: dict) -> tuple[int, ...]:
        return (2 * len(prep["numeric"]) + len(prep["categorical"]),)

    def fit(self, cells: Any, prep: dict) -> dict:
        """Means and standard deviations of the numbers, vocabularies of the categories, from
        the training rows (a frame of the input's columns)."""
        frame = _frame(cells, prep)
        stats = {}
        for c in prep["numeric"]:
            mark, unit = decimal_mark(frame[c]), unit_of(frame[c])
            x = numbers(frame[c], mark, unit)
            x = x[np.isfinite(x)]
            # all above 0 and right-skewed (an area, a price, a count): the log scale, where its
            # few large values no longer squeeze the others together; the rule of log targets
            log = log_target(x)
            floor = float(x.min()) if log else 0.0
            if log:
                x = np.log(x)
            mean = float(x.mean()) if len(x) else 0.0
            std = float(x.std()) if len(x) > 1 else 0.0
            stats[c] = {"mean": mean, "std": std if std > 0 else 1.0, "log": log, "floor": floor, "decimal": mark,
                        "unit": unit}
        vocab = {}
        for c in prep["categorical"]:
            counts = pd.Series([category(v) for v in frame[c]], dtype=object).dropna().value_counts()
            counts = counts[counts >= prep["min_frequency"]]
            vocab[c] = sorted(counts.index, key=lambda k: (-counts[k], k))[: prep["max_categories"]]
        return {"numeric": stats, "categorical": vocab}

    def encode(self, cells: Any, prep: dict, state: dict) -> np.ndarray:
        """Rows -> float32 ``[N, 2 * numeric + categorical]``: standardised numbers (0 where
        missing), missing indicators, category ids (0 missing, 1 unknown)."""
        frame = _frame(cells, prep)
        parts = []
        if prep["numeric"]:
            x = np.stack([_scaled(numbers(frame[c], state["numeric"][c].get("decimal"), state["numeric"][c].get("unit")),
                                  state["numeric"][c]) for c in prep["numeric"]], axis=1)
            mean = np.array([state["numeric"][c]["mean"] for c in prep["numeric"]])
            std = np.array([state["numeric"][c]["std"] for c in prep["numeric"]])
            missing = ~np.isfinite(x)
            z = np.clip(np.where(missing, 0.0, (np.nan_to_num(x) - mean) / std), -CLIP, CLIP)
            parts += [z, missing.astype(np.float64)]
        for c in prep["categorical"]:
            index = {k: i for i, k in enumerate(state["categorical"][c], start=2)}
            ids = [MISSING if k is None else index.get(k, UNKNOWN) for k in (category(v) for v in frame[c])]
            parts.append(np.asarray(ids, dtype=np.float64).reshape(-1, 1))
        if not parts:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def info(self, prep: dict, state: dict) -> ModalityInfo:
        vocab = state.get("categorical", {})
        return ModalityInfo("tabular", extra={
            "numeric": len(prep["numeric"]),
            "cardinalities": [len(vocab.get(c, [])) + 2 for c in prep["categorical"]],
            "columns": [*prep["numeric"], *prep["categorical"]],
        })

    def recognises(self, values: Sequence[Any]) -> bool:
        """A numeric or low-cardinality column (ids are left out by the column finder)."""
        return column_kind(pd.Series(list(values), dtype=object)) is not None

    def render_demo(self, bits: tuple[int, int], rng: np.random.Generator, path: Path) -> Any:
        """Four columns: ``score`` shows the first attribute (a number around -1 or 1, 3%
        missing), ``grade`` the second (one of p, q, r or one of s, t, u); ``noise`` (10%
        missing) and ``shop`` (30 categories, some rare) carry nothing."""
        first, second = bits
        score = None if rng.random() < 0.03 else round(float(rng.normal(1.0 if first else -1.0, 0.35)), 3)
        grade = str(rng.choice(list("stu" if second else "pqr")))
        noise = None if rng.random() < 0.1 else round(float(rng.normal(0, 1)), 3)
        shop = f"shop{int(rng.zipf(1.6)) % 30:02d}"
        return {"score": score, "grade": grade, "noise": noise, "shop": shop}


def is_code(col: pd.Series) -> bool:
    """Whole numbers in a column whose name says it is a code (zip codes, postal codes, shop
    ids): their order means nothing, so they are categories."""
    x = numbers(col)
    x = x[np.isfinite(x)]
    return bool(CODE_NAME.search(str(col.name or ""))) and len(x) > 0 and bool(np.all(x == np.round(x)))


def _scaled(x: np.ndarray, stats: dict) -> np.ndarray:
    """A numeric column on the scale its statistics were fitted on (values at or below 0 in
    a log-scaled column are raised to the training minimum first)."""
    if not stats.get("log"):
        return x
    return np.log(np.maximum(x, stats["floor"]))


def _frame(cells: Any, prep: dict) -> pd.DataFrame:
    """The input's cells as a frame holding every declared column (a lacking one: all missing)."""
    frame = cells if isinstance(cells, pd.DataFrame) else pd.DataFrame(cells)
    frame = frame.reset_index(drop=True)
    for c in (*prep["numeric"], *prep["categorical"]):
        if c not in frame.columns:
            frame[c] = None
    return frame

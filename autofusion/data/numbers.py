"""Numbers as people write them in tables: ``$1,234.50``, ``15%``, ``€ 12,99``, ``(300)``,
``1 234 567``, ``CHF 1'250``, ``−3`` (a Unicode minus), beside the plain ``1234.5`` that
pandas reads itself.

A cell is a number when what is left after its currency (a symbol, or a code such as ``USD``,
before or after), its percent sign (the number as written: ``15%`` is 15) and an accounting
negative's parentheses is a number whose thousands are grouped by threes. Whether a column
writes its decimals with a point or a comma (``12,99``) is decided once over the column
(:func:`decimal_mark`) and saved with what a model learns of it, so that a row served alone
(``1,500``) reads as its training rows did. A cell holding only a placeholder of a missing value
(``-``, ``?``, ``n/a``: :data:`MISSING_MARKS`) is missing, not a string. A column whose cells
nearly all end in one unit (``120 min``, ``1,248 CC``, ``23.4 kmpl``: :func:`unit_of`) is the
numbers before it; the unit is decided once and saved like the decimal mark.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable

import numpy as np
import pandas as pd

CURRENCY = "$€£¥₹₩₽¢₺₴₪₫฿"
CODES = ("USD", "EUR", "GBP", "JPY", "CNY", "RMB", "INR", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK",
         "PLN", "CZK", "HUF", "BRL", "MXN", "ZAR", "RUB", "TRY", "KRW", "SGD", "HKD")
# placeholders spreadsheets and exports write for "no value" in a numeric column
MISSING_MARKS = frozenset({"-", "--", "---", "—", "–", "?", "n/a", "na", "n.a.", "null", "none", "nan", "missing",
                           "unknown", "#n/a", "#na", "#value!", "#div/0!", "#ref!", "#num!", "#null!"})
_AROUND = re.compile(rf"^(?:[{re.escape(CURRENCY)}]|(?:{'|'.join(CODES)})(?=[\s\d.,+-]))\s*"
                     rf"|\s*(?:[{re.escape(CURRENCY)}%]|(?<=[\d\s.])(?:{'|'.join(CODES)}))$", re.I)
_SPACES = re.compile(r"(?<=\d)[\s\u00a0\u2009\u202f'’](?=\d{3}(?:\D|$))")  # 1 234, 1'234: grouped thousands
_POINT = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?$")  # 1,234.5 / 1234.5 / .5
_COMMA = re.compile(r"^[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)?(?:,\d+)?$")  # 1.234,5 / 1234,5 / ,5
_COMMA_DECIMALS = re.compile(r"^[+-]?(?:\d{1,3}(?:\.\d{3})+,\d+|\d*,(?:\d{1,2}|\d{4,}))$")  # only a comma mark reads so
_POINT_DECIMALS = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+\.\d+|\d*\.(?:\d{1,2}|\d{4,}))$")
_LETTER = re.compile(r"[^\W\d_]")  # a letter: only a currency code may hold one
_CODE = re.compile(rf"\b(?:{'|'.join(CODES)})\b", re.I)
_UNIT = re.compile(r"^\s*([-+(]?[^\sA-Za-z]*\d\)?)\s*([A-Za-z°µ][A-Za-z°µ/²³]{0,7})\.?\s*$")  # 120 min, 5G
UNIT_SHARE = 0.9  # of a column's written cells that must end in one unit
SAMPLE = 2000  # cells a column's decimal mark (and unit) is decided on
MAX_LENGTH = 40  # characters a written number has at most ("USD -1 234 567 890,12" has 21)


def is_marked_missing(v: Any) -> bool:
    """A string that only says a value is missing (``-``, ``n/a``, ``#N/A``)."""
    return isinstance(v, str) and v.strip().lower() in MISSING_MARKS


def core(s: str) -> tuple[str, bool]:
    """A cell's number as digits, separators and sign, without currency, percent sign,
    grouping spaces or parentheses, and whether it was written as a negative in parentheses."""
    s = s.strip().replace("−", "-")
    negative = len(s) > 2 and s[0] == "(" and s[-1] == ")"
    s = s[1:-1].strip() if negative else s
    sign = ""
    if s[:1] in "+-" and len(s) > 1 and not s[1].isdigit():  # -$5
        sign, s = s[0], s[1:].strip()
    for _ in range(2):  # a symbol or code on each side at most: "USD 1,200" / "12 €" / "$1,200 USD"
        s = _AROUND.sub("", s, count=1).strip()
    return sign + _SPACES.sub("", s), negative


def decimal_mark(cells: Iterable[Any]) -> str:
    """``","`` when a column's numbers are written with decimal commas (``12,99``, ``1.234,5``)
    and none with a decimal point, else ``"."``; ``1,234`` alone reads as a thousand."""
    comma = point = False
    for v in _strings(cells):
        c, _ = core(v)
        comma = comma or bool(_COMMA_DECIMALS.match(c))
        point = point or bool(_POINT_DECIMALS.match(c))
    return "," if comma and not point else "."


@functools.lru_cache(maxsize=1 << 18)  # a column's cells are read several times while its kind is decided
def parse(s: str, mark: str = ".") -> float:
    """One written number (see the module's docstring), NaN when it is none."""
    c, negative = core(s)
    if not c or not any(ch.isdigit() for ch in c):
        return float("nan")
    if mark == ",":
        if not _COMMA.match(c):
            return float("nan")
        c = c.replace(".", "").replace(",", ".")
    else:
        if not _POINT.match(c):
            return float("nan")
        c = c.replace(",", "")
    try:
        x = float(c)
    except ValueError:
        return float("nan")
    return -x if negative else x


def unit_of(cells: Iterable[Any]) -> str:
    """The unit nearly every written cell of a column ends in (``min`` for ``120 min``,
    ``90 Min``), casefolded; ``""`` when there is none."""
    texts = [v for v in cells if isinstance(v, str) and v.strip() and not is_marked_missing(v)][:SAMPLE]
    units = [_unit_key(m.group(2)) for m in map(_UNIT.match, texts) if m]
    if not texts or len(units) < UNIT_SHARE * len(texts):
        return ""
    top = max(set(units), key=units.count)
    return top if units.count(top) >= UNIT_SHARE * len(texts) else ""


def _unit_key(unit: str) -> str:
    """A unit as compared: casefolded, a plural's s dropped (``Baths`` is ``bath``)."""
    u = unit.casefold()
    return u[:-1] if len(u) >= 4 and u.endswith("s") else u


def to_numbers(cells: pd.Series, mark: str | None = None, unit: str | None = None) -> np.ndarray:
    """Cells as float64 (NaN where missing or no number): pandas' own reading first, then each
    string it could not read as a written number with the column's decimal ``mark`` and
    ``unit`` (each decided from the cells when None)."""
    cells = pd.Series(cells, dtype=object).reset_index(drop=True)
    x = pd.to_numeric(cells, errors="coerce").astype("float64").to_numpy(copy=True)
    strings = cells.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    unread = np.flatnonzero(np.isnan(x) & strings)
    if not len(unread):
        return x
    unit = unit_of(cells.iloc[unread]) if unit is None else unit
    if unit:  # 120 min -> 120
        cells = cells.copy()
        for i in unread:
            m = _UNIT.match(cells.iat[i])
            if m and _unit_key(m.group(2)) == unit:
                cells.iat[i] = m.group(1)
    candidates = {v for v in dict.fromkeys(cells.iloc[unread]) if _maybe(v)}  # each distinct string once
    if not candidates:
        return x
    if mark is None:
        mark = decimal_mark(cells)
    if mark == ",":  # pandas read "1.234" as 1.234: a comma column's cells are all read the written way
        unread = np.flatnonzero(strings)
        candidates = {v for v in dict.fromkeys(cells.iloc[unread]) if _maybe(v)}
    values = {v: parse(v, mark) for v in candidates}
    for i in unread:
        v = cells.iat[i]
        if v in values:
            x[i] = values[v]
    return x


def _maybe(v: Any) -> bool:
    """A string that may be a written number: short, with a digit (free text is neither)."""
    return isinstance(v, str) and len(v) <= MAX_LENGTH and _maybe_short(v)  # free text is never cached


@functools.lru_cache(maxsize=1 << 18)
def _maybe_short(v: str) -> bool:
    return (any(ch.isdigit() for ch in v) and (not _LETTER.search(v) or bool(_CODE.search(v)))
            and not is_marked_missing(v))


def _strings(cells: Iterable[Any]) -> list[str]:
    out = []
    for v in cells:
        if _maybe(v):
            out.append(v)
            if len(out) >= SAMPLE:
                break
    return out

"""Reading a manifest into a DataFrame: CSV, TSV, JSONL/JSON, Parquet or an Excel workbook, a
text one also compressed (``.gz``, ``.bz2``, ``.xz``, one file in a ``.zip``); a JSON one's
nested objects flattened into columns. Which column plays which role is ``data.manifest``'s.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd

from autofusion.errors import DataError

_EMPTY_HINT = "write a header row (e.g. image,text,label) and one row per sample"

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json", ".parquet": "parquet", ".pq": "parquet", ".xlsx": "excel", ".xlsm": "excel",
}
BINARY = ("parquet", "excel")  # formats read from the file, not from its text
COMPRESSED = (".gz", ".bz2", ".xz", ".zip")  # a text manifest compressed (one file in a .zip)


def format_of(path: Path) -> str | None:
    """A manifest's format from its name (``m.csv``, ``m.csv.gz``; a ``.zip``'s from the file it
    holds); None when unknown."""
    fmt = FORMATS.get(inner_name(path).suffix.lower())
    if fmt is None and path.suffix.lower() == ".zip" and path.is_file():
        fmt = FORMATS.get(Path(_zip_member(path)).suffix.lower())
    if path.suffix.lower() in COMPRESSED and fmt in BINARY:
        return None
    return fmt


def inner_name(path: Path) -> Path:
    """The name of what a compressed file holds (``m.csv.gz`` -> ``m.csv``), else the path."""
    return Path(path.stem) if path.suffix.lower() in COMPRESSED else path


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Reads a manifest into a DataFrame with a fresh 0..N-1 index (the row numbers users see
    are 1-based data rows).

    Cells are kept as written: JSON strings such as ``"0012"`` stay strings (no dtype or date
    guessing), and a UTF-8 byte-order mark is dropped.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"manifest {str(path)!r} does not exist; check the path "
            "(autofusion data demo TASK OUT writes an example manifest)"
        )
    if path.is_dir():
        raise DataError(f"manifest {str(path)!r} is a folder; give the CSV/JSONL/Parquet/.xlsx file in it")
    fmt = format_of(path)
    if fmt is None:
        suffix = path.suffix.lower()
        old = " (the old binary Excel format: save it as .xlsx or .csv)" if suffix == ".xls" else ""
        inner = f" inside {suffix}" if suffix in COMPRESSED else ""
        raise DataError(
            f"manifest {str(path)!r}: unknown format {inner_name(path).suffix or '(no extension)'!r}{inner}{old}; "
            "use .csv, .tsv, .jsonl, .json, .parquet or .xlsx (.csv, .tsv and .jsonl also compressed: "
            ".gz, .bz2, .xz, .zip)"
        )
    if path.stat().st_size == 0:
        raise DataError(f"manifest {str(path)!r} is empty; {_EMPTY_HINT}")
    text = "" if fmt in BINARY else _read_text(path)
    try:
        if fmt == "parquet":
            df = flatten(pd.read_parquet(path))  # struct columns, as JSON objects
        elif fmt == "excel":
            df = _read_excel(path)
        elif fmt in ("csv", "tsv"):
            sep = "\t" if fmt == "tsv" else separator(text)
            df = pd.read_csv(io.StringIO(text), sep=sep, decimal="," if sep == ";" else ".",
                             keep_default_na=True, dtype_backend="numpy_nullable")
        else:
            df = flatten(pd.read_json(io.StringIO(text), lines=fmt == "jsonl", dtype=False))
    except pd.errors.EmptyDataError:
        raise DataError(f"manifest {str(path)!r} is empty; {_EMPTY_HINT}") from None
    except (ValueError, pd.errors.ParserError, OSError, ImportError, KeyError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"manifest {str(path)!r} cannot be parsed as {fmt}: {first}") from None
    if len(df) == 0:
        raise DataError(f"manifest {str(path)!r} has a header but no rows; add one row per sample")
    df.columns = [str(c).strip() for c in df.columns]
    # a trailing separator on every line (spreadsheet exports): a nameless column with nothing in it
    df = df.loc[:, [not (c.startswith("Unnamed: ") and df[c].isna().all()) for c in df.columns]]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataError(f"manifest {str(path)!r}: column names must be unique, but {', '.join(map(repr, dup))} repeat")
    return df.reset_index(drop=True)


def _read_excel(path: Path) -> pd.DataFrame:
    """A workbook's first sheet, its first row the header, cells typed as the spreadsheet
    holds them (numbers, dates, text; an empty cell is missing). A workbook with no rows under
    its header reads as empty, as a CSV does. With several sheets, ``attrs["sheet"]`` says
    which was read (:func:`sheet_note`)."""
    with pd.ExcelFile(path, engine="openpyxl") as book:
        names = [str(n) for n in book.sheet_names]
        df = pd.read_excel(book, sheet_name=0, dtype_backend="numpy_nullable")
    empty = df.isna() | df.apply(lambda c: c.map(lambda v: isinstance(v, str) and not v.strip()))
    df = df.loc[~empty.all(axis=1)]  # rows a spreadsheet keeps, formatted or holding a space, but empty
    df = df.loc[:, [not (str(c).startswith("Unnamed: ") and empty.loc[df.index, c].all()) for c in df.columns]]
    if len(names) > 1:
        df.attrs["sheet"] = (f"sheet {names[0]!r}, the first of {len(names)}: {', '.join(map(repr, names))}; "
                             "to read another, move it first or save it as its own file")
    return df


def flatten(df: pd.DataFrame) -> pd.DataFrame:
    """A JSON manifest's nested objects as columns of their own, named by their path
    (``{"meta": {"price": 3}}`` -> ``meta.price``), as ``pandas.json_normalize`` names them: a
    column of objects (or missing cells) only; lists, and a column mixing objects with other
    values, stay cells."""
    nested = [c for c in df.columns if df[c].map(lambda v: isinstance(v, dict)).any()
              and df[c].map(lambda v: isinstance(v, dict) or v is None or (isinstance(v, float) and v != v)).all()]
    for c in nested:
        cells = [v if isinstance(v, dict) else {} for v in df[c]]
        wide = pd.json_normalize(cells).add_prefix(f"{c}.")
        wide.index = df.index
        at = list(df.columns).index(c)
        df = pd.concat([df.iloc[:, :at], wide, df.iloc[:, at + 1:]], axis=1)
    return df


def sheet_note(df: pd.DataFrame) -> str | None:
    """Which sheet of a workbook with several was read, or None."""
    return df.attrs.get("sheet")


def separator(text: str) -> str:
    """A CSV's field separator: ``,`` unless its header row has none and has ``;`` (a
    spreadsheet saved in a locale whose decimal mark is the comma: ``12,5`` is then read as
    12.5), a tab or ``|``."""
    head = text.split("\n", 1)[0]
    if "," in head:
        return ","
    return max((";", "\t", "|"), key=head.count) if any(d in head for d in ";\t|") else ","


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, uncompressed (:data:`COMPRESSED`), or UTF-16 where it starts with
    UTF-16's byte-order mark (Excel's "Unicode Text" export); the error names the line and byte of
    the first bad byte."""
    raw = _uncompressed(path)
    utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
    try:
        text = raw.decode("utf-16") if utf16 else raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"manifest {str(path)!r} is not UTF-8 text (line {line}, byte {exc.start}); save it as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"manifest {str(path)!r} is empty; {_EMPTY_HINT}")
    return text


def _zip_member(path: Path) -> str:
    """The one file a ``.zip`` manifest holds (macOS's ``__MACOSX`` folder aside)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"manifest {str(path)!r} cannot be uncompressed as .zip: {exc}") from None
    if len(names) != 1:
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise DataError(f"manifest {str(path)!r} holds {len(names)} files ({shown or 'none'}); a .zip manifest "
                        "holds one, the CSV/TSV/JSONL: unzip it and give that file")
    return names[0]


def _uncompressed(path: Path) -> bytes:
    """The file's bytes, uncompressed when its name says it is compressed."""
    import bz2
    import gzip
    import lzma

    suffix = path.suffix.lower()
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                return z.read(_zip_member(path))
        opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix)
        if opener is None:
            return path.read_bytes()
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise DataError(f"manifest {str(path)!r} cannot be uncompressed as {suffix}: {exc}") from None

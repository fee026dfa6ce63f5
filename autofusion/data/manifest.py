"""Reading a manifest (CSV, TSV, JSONL/JSON or Parquet) and finding its column roles.

A role (image, text, audio, video, label, split) comes from ``--columns``, then from the
space file's ``data.columns``, then from the column names when exactly one matches.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from autofusion.errors import DataError

MODALITIES = ("image", "text", "audio", "video")
ROLES = (*MODALITIES, "label", "split")

# Names a role is recognised by, most specific first.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "image": ("image", "image_path", "img", "image_file", "picture", "poster", "photo"),
    "text": ("text", "caption", "sentence", "description", "title", "comment", "review", "plot"),
    "audio": ("audio", "audio_path", "wav", "sound", "audio_file", "clip_audio"),
    "video": ("video", "video_path", "clip", "video_file", "movie"),
    "label": ("label", "labels", "target", "class", "y", "category", "genre"),
    "split": ("split", "subset", "fold_name", "partition"),
}

_EMPTY_HINT = "write a header row (e.g. image,text,label) and one row per sample"

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json", ".parquet": "parquet", ".pq": "parquet",
}


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
        raise DataError(f"manifest {str(path)!r} is a folder; give the CSV/JSONL/Parquet file in it")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"manifest {str(path)!r}: unknown format {path.suffix or '(no extension)'!r}; "
            "use .csv, .tsv, .jsonl, .json or .parquet"
        )
    if path.stat().st_size == 0:
        raise DataError(f"manifest {str(path)!r} is empty; {_EMPTY_HINT}")
    text = "" if fmt == "parquet" else _read_text(path)
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        elif fmt in ("csv", "tsv"):
            df = pd.read_csv(io.StringIO(text), sep="\t" if fmt == "tsv" else ",",
                             keep_default_na=True, dtype_backend="numpy_nullable")
        else:
            df = pd.read_json(io.StringIO(text), lines=fmt == "jsonl", dtype=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"manifest {str(path)!r} is empty; {_EMPTY_HINT}") from None
    except (ValueError, pd.errors.ParserError, OSError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"manifest {str(path)!r} cannot be parsed as {fmt}: {first}") from None
    if len(df) == 0:
        raise DataError(f"manifest {str(path)!r} has a header but no rows; add one row per sample")
    df.columns = [str(c).strip() for c in df.columns]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataError(f"manifest {str(path)!r}: column names must be unique, but {', '.join(map(repr, dup))} repeat")
    return df.reset_index(drop=True)


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; the error names the line and byte of the first bad byte."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"manifest {str(path)!r} is not UTF-8 text (line {line}, byte {exc.start}); save it as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"manifest {str(path)!r} is empty; {_EMPTY_HINT}")
    return text


def parse_columns_flag(text: str | None) -> dict[str, str]:
    """``image=poster,text=plot`` -> ``{"image": "poster", "text": "plot"}``."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        role, sep, col = part.partition("=")
        role, col = role.strip(), col.strip()
        if not sep or not role or not col:
            raise DataError(f"--columns: expected ROLE=COLUMN, got {part.strip()!r}")
        if role not in ROLES:
            raise DataError(f"--columns: unknown role {role!r}; known: {', '.join(ROLES)}")
        if role in out and out[role] != col:
            raise DataError(f"--columns: role {role!r} is given twice ({out[role]!r} and {col!r})")
        out[role] = col
    return out


def candidate_columns(columns: list[str], role: str) -> list[str]:
    """The columns whose name is one of ``role``'s synonyms (case-insensitive), most specific first."""
    lower: dict[str, str] = {}
    for c in columns:
        lower.setdefault(c.lower(), c)
    return [lower[s] for s in SYNONYMS[role] if s in lower]


def resolve_columns(
    df: pd.DataFrame,
    manifest: Path,
    modalities: list[str],
    *,
    flag: dict[str, str] | None = None,
    space: dict[str, str] | None = None,
    optional: tuple[str, ...] = ("split",),
) -> dict[str, str]:
    """Maps each needed role (the modalities and label; split if present) to a column.

    Roles in ``optional`` are left out when no column fits them (prediction needs no label).

    Columns named explicitly (``--columns``, then ``data.columns``) are taken first, so a
    name-based guess never claims a column that was given to another role.
    """
    needed = [*modalities, "label", "split"]
    for role, col in (flag or {}).items():
        if role not in needed:
            raise DataError(
                f"--columns {role}={col}: {role} is not a modality of this space "
                f"(modalities: {', '.join(modalities)})"
            )
    given = {r: c for r, c in {**(space or {}), **(flag or {})}.items() if r in needed}
    cols = list(df.columns)
    roles: dict[str, str] = {}
    for role in needed:
        if role not in given:
            continue
        source = "--columns" if role in (flag or {}) else "data.columns"
        if given[role] not in cols:
            raise DataError(
                f"{manifest}: column {given[role]!r} ({source} {role}) not found; columns: {', '.join(cols)}"
            )
        other = next((r for r, c in roles.items() if c == given[role]), None)
        if other is not None:
            raise DataError(f"{manifest}: column {given[role]!r} is given for both {other} and {role}")
        roles[role] = given[role]
    for role in needed:
        if role in roles:
            continue
        found = [c for c in candidate_columns(cols, role) if c not in roles.values()]
        if role in optional and not found:
            continue
        if not found:
            raise DataError(
                f"{manifest}: no {role} column; columns are {', '.join(cols)}; "
                f"name one with --columns {role}=COLUMN"
            )
        exact = [c for c in found if c.lower() == role]
        if len(found) > 1 and not exact:
            raise DataError(
                f"{manifest}: several columns could be the {role} ({', '.join(found)}); "
                f"pick one with --columns {role}=COLUMN"
            )
        roles[role] = exact[0] if exact else found[0]
    return {r: roles[r] for r in needed if r in roles}

"""Reading a manifest (CSV, TSV, JSONL/JSON or Parquet) and finding its column roles.

A role (image, text, audio, video, label, split) comes from ``--columns``, then from the
space file's ``data.columns``, then from the column names when exactly one matches.
"""

from __future__ import annotations

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

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json", ".parquet": "parquet", ".pq": "parquet",
}


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Reads a manifest into a DataFrame with a fresh 0..N-1 index (the row numbers users see
    are 1-based data rows)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"manifest {str(path)!r} does not exist")
    if path.is_dir():
        raise DataError(f"manifest {str(path)!r} is a folder; give the CSV/JSONL/Parquet file in it")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"manifest {str(path)!r}: unknown format {path.suffix or '(no extension)'!r}; "
            "use .csv, .tsv, .jsonl, .json or .parquet"
        )
    if path.stat().st_size == 0:
        raise DataError(f"manifest {str(path)!r} is empty")
    try:
        if fmt in ("csv", "tsv"):
            df = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", encoding="utf-8",
                             keep_default_na=True, dtype_backend="numpy_nullable")
        elif fmt == "jsonl":
            df = pd.read_json(path, lines=True, encoding="utf-8")
        elif fmt == "json":
            df = pd.read_json(path, encoding="utf-8")
        else:
            df = pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"manifest {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except (ValueError, pd.errors.ParserError, OSError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"manifest {str(path)!r} cannot be parsed as {fmt}: {first}") from None
    if len(df) == 0:
        raise DataError(f"manifest {str(path)!r} has a header but no rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df.reset_index(drop=True)


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
        out[role] = col
    return out


def resolve_columns(
    df: pd.DataFrame,
    manifest: Path,
    modalities: list[str],
    *,
    flag: dict[str, str] | None = None,
    space: dict[str, str] | None = None,
) -> dict[str, str]:
    """Maps each needed role (the modalities and label; split if present) to a column."""
    given = {**(space or {}), **(flag or {})}
    cols = list(df.columns)
    lower = {c.lower(): c for c in cols}
    roles: dict[str, str] = {}
    for role in [*modalities, "label", "split"]:
        if role in given:
            if given[role] not in cols:
                raise DataError(
                    f"{manifest}: column {given[role]!r} (for {role}) not found; columns: {', '.join(cols)}"
                )
            roles[role] = given[role]
            continue
        found = [lower[s] for s in SYNONYMS[role] if s in lower and lower[s] not in roles.values()]
        if role == "split" and not found:
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
    return roles

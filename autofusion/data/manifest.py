"""Finding a manifest's column roles (``data.reading`` reads it).

A role (a modality such as image or text, or label, split, group) comes from ``--columns``,
then from the space file's ``data.columns``, then from the column names when exactly one
matches, and for a modality finally from the columns' contents (every column of image file
paths is an image input). A modality may have several columns (four photos of a house):
each is a separate input of the model. A modality that ``claims_rest`` (tabular) takes, last,
every column left that it recognises, except row ids.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from autofusion.errors import DataError
from autofusion.modalities import MODALITIES

_FIRST = ("image", "text", "audio", "video")
MODALITY_ROLES = (*_FIRST, *(m for m in MODALITIES.names() if m not in _FIRST))  # the registry's, in this order
OTHER_ROLES = ("label", "split", "group")
ROLES = (*MODALITY_ROLES, *OTHER_ROLES)
SINGLE_ROLES = OTHER_ROLES  # roles that take exactly one column

# Names a role is recognised by, most specific first.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "image": ("image", "image_path", "img", "image_file", "picture", "poster", "photo"),
    "text": ("text", "caption", "sentence", "description", "title", "comment", "review", "plot"),
    "audio": ("audio", "audio_path", "wav", "sound", "audio_file", "clip_audio"),
    "video": ("video", "video_path", "clip", "video_file", "movie"),
    "sensor": ("sensor", "sensors", "signal", "readings", "time_series", "timeseries"),
    "label": ("label", "labels", "target", "targets", "class", "classes", "y", "category", "categories", "genre",
              "genres"),
    "split": ("split", "subset", "fold_name", "partition"),
    "group": ("group", "group_id", "patient", "patient_id", "subject", "subject_id", "speaker", "speaker_id"),
}

# Column names of row identifiers, never a feature (also: any name ending in _id).
ID_NAMES = frozenset({"id", "idx", "index", "uid", "uuid", "key", "row", "rowid", "row_id", "sample", "sample_id",
                      "no", "nr", "#", "rownum", "row_number", "record", "level_0"})
UNNAMED = re.compile(r"^unnamed: \d+$")  # a DataFrame's index saved by pandas (to_csv without index=False)

def parse_columns_flag(text: str | None, roles: tuple[str, ...] = ROLES) -> dict[str, list[str]]:
    """``image=poster,text=plot`` -> ``{"image": ["poster"], "text": ["plot"]}``.

    A part without ``=`` adds a column to the role before it, so ``image=front,back`` gives
    the image role two columns and ``tabular=price,brand`` two tabular columns.
    """
    if not text:
        return {}
    out: dict[str, list[str]] = {}
    role = None
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, col = part.partition("=")
        if not sep:
            if role is None:
                raise DataError(f"--columns: expected ROLE=COLUMN, got {part.strip()!r}")
            name, col = role, part
        name, col = name.strip(), col.strip()
        if not name or not col:
            raise DataError(f"--columns: expected ROLE=COLUMN, got {part.strip()!r}")
        if name not in roles:
            raise DataError(f"--columns: unknown role {name!r}; known: {', '.join(roles)}")
        if sep and name in SINGLE_ROLES and out.get(name, [col]) != [col]:
            raise DataError(f"--columns: role {name!r} is given twice ({out[name][0]!r} and {col!r})")
        cols = out.setdefault(name, [])
        if name in SINGLE_ROLES and cols and cols != [col]:
            raise DataError(f"--columns: role {name!r} takes one column, but got {cols[0]!r} and {col!r}")
        if col not in cols:
            cols.append(col)
        role = name
    return out


def candidate_columns(columns: list[str], role: str) -> list[str]:
    """The columns whose name is one of ``role``'s synonyms (case-insensitive), most specific first."""
    lower: dict[str, str] = {}
    for c in columns:
        lower.setdefault(c.lower(), c)
    return [lower[s] for s in SYNONYMS.get(role, ()) if s in lower]


def resolve_columns(
    df: pd.DataFrame,
    manifest: Path,
    modalities: list[str],
    *,
    flag: dict[str, list[str]] | None = None,
    space: dict[str, str | list[str]] | None = None,
    declared: dict[str, list[str]] | None = None,
    optional: tuple[str, ...] = ("split", "group"),
) -> dict[str, list[str]]:
    """Maps each needed role (the modalities and label; split and group if present) to its
    column(s).

    Roles in ``optional`` are left out when no column fits them (prediction needs no label).
    Columns named explicitly (``--columns``, then ``data.columns``) are taken first, so a
    guess never claims a column given to another role; then names (``SYNONYMS``); then, for
    a modality still without a column, every unclaimed column whose contents it recognises
    (image file paths, free text, ...). ``declared`` columns (tabular's ``numeric`` and
    ``categorical`` settings) belong to their modality, which still takes the rest it
    recognises unless ``--columns`` or ``data.columns`` name its columns. A group column
    given explicitly claims nothing: a modality may share it (``group=image`` keeps the rows
    of one image file in one split), but no modality takes it by its contents.
    """
    needed = [*modalities, *OTHER_ROLES]
    flag = _flag_roles(flag, needed, modalities)
    given = {r: c for r, c in _listed(space).items() if r in needed}
    given.update({r: list(c) for r, c in flag.items()})
    cols = list(df.columns)
    roles: dict[str, list[str]] = {}
    claimed: dict[str, str] = {}
    _take_given(manifest, cols, needed, given, flag, roles, claimed)
    partial = [r for r in (declared or {}) if r in modalities and r not in given]
    _take_declared(manifest, cols, modalities, declared or {}, roles, claimed)
    guessed = _take_named(df, manifest, needed, modalities, roles, claimed)
    _take_recognised(df, modalities, [*partial, *guessed], roles, claimed)
    for role in guessed:  # in the manifest's order (a joined text reads its fields in that order)
        roles[role].sort(key=cols.index)
    for role in needed:
        if role not in roles and role not in optional:
            raise DataError(
                f"{manifest}: no {role} column; columns are {', '.join(cols)}; "
                f"name one with --columns {role}=COLUMN"
            )
    return {r: roles[r] for r in needed if r in roles}


def _flag_roles(flag: dict[str, str | list[str]] | None, needed: list[str],
                modalities: list[str]) -> dict[str, list[str]]:
    """``--columns`` as role -> column list; a role that is not a modality of the space is an error."""
    out = _listed(flag)
    for role, cols in out.items():
        if role not in needed:
            raise DataError(
                f"--columns {role}={','.join(cols)}: {role} is not a modality of this space "
                f"(modalities: {', '.join(modalities)})"
            )
    return out


def _listed(mapping: dict[str, str | list[str]] | None) -> dict[str, list[str]]:
    """role -> a column or columns, as role -> a new list of columns."""
    return {r: ([c] if isinstance(c, str) else list(c)) for r, c in (mapping or {}).items()}


def _take_given(manifest: Path, cols: list[str], needed: list[str], given: dict[str, list[str]],
                flag: dict[str, list[str]], roles: dict[str, list[str]], claimed: dict[str, str]) -> None:
    """First, the columns named explicitly (``--columns``, then ``data.columns``): each must exist
    and belong to one role only (a group column claims nothing)."""
    for role in needed:
        for col in given.get(role, []):
            source = "--columns" if role in flag else "data.columns"
            if col not in cols:
                raise DataError(f"{manifest}: column {col!r} ({source} {role}) not found; columns: {', '.join(cols)}")
            roles.setdefault(role, []).append(col)
            if role == "group":  # it claims nothing: a modality may share it (one image file in many rows)
                continue
            if col in claimed:
                raise DataError(f"{manifest}: column {col!r} is given for both {claimed[col]} and {role}")
            claimed[col] = role


def _take_declared(manifest: Path, cols: list[str], modalities: list[str], declared: dict[str, list[str]],
                   roles: dict[str, list[str]], claimed: dict[str, str]) -> None:
    """Then the columns a modality's settings declare (tabular's ``numeric`` and ``categorical``)."""
    for role, declared_cols in declared.items():
        for col in (c for c in declared_cols if role in modalities and c not in roles.get(role, [])):
            if col not in cols:
                raise DataError(f"{manifest}: column {col!r} (modalities.{role}) not found; columns: {', '.join(cols)}")
            if col in claimed:
                raise DataError(f"{manifest}: column {col!r} is given for both {claimed[col]} and {role}")
            claimed[col] = role
            roles.setdefault(role, []).append(col)


def _take_named(df: pd.DataFrame, manifest: Path, needed: list[str], modalities: list[str],
                roles: dict[str, list[str]], claimed: dict[str, str]) -> list[str]:
    """Then, for each role still without a column, the unclaimed column named like it (``SYNONYMS``);
    returns the modalities found so that take several columns (they also take what they recognise)."""
    cols = list(df.columns)
    guessed = []
    for role in [r for r in needed if r not in roles and r in SYNONYMS]:
        found = [c for c in candidate_columns(cols, role) if c not in claimed]
        exact = [c for c in found if c.lower() == role]
        if role in modalities and _many(role):  # several text or image columns are several inputs
            picks = [c for c in found if c in exact or MODALITIES.get(role).recognises(df[c].tolist())]
            if picks:
                roles[role] = picks
                claimed.update({c: role for c in picks})
                guessed.append(role)
                continue
        if len(found) > 1 and not exact:
            raise DataError(
                f"{manifest}: several columns could be the {role} ({', '.join(found)}); "
                f"pick one with --columns {role}=COLUMN"
            )
        if found:
            pick = exact[0] if exact else found[0]
            roles[role], claimed[pick] = [pick], role
            if role in modalities and _many(role):  # the other text columns join it (a review's body)
                guessed.append(role)
    return guessed


def _take_recognised(df: pd.DataFrame, modalities: list[str], reopened: list[str],
                     roles: dict[str, list[str]], claimed: dict[str, str]) -> None:
    """Last, for each modality without a column (or in ``reopened``), every unclaimed column whose
    contents it recognises; modalities that take every leftover column (tabular) go after the others."""
    cols = list(df.columns)
    for rest in (False, True):
        for role in [m for m in modalities if (m not in roles or m in reopened) and m in MODALITIES]:
            mod = MODALITIES.get(role)
            if getattr(mod, "claims_rest", False) is not rest:
                continue
            found = [c for c in cols if c not in claimed and c not in roles.get("group", [])
                     and not (not mod.file_based and id_named(c))
                     and mod.recognises(df[c].tolist()) and not (rest and id_like(c, df[c]))]
            if found:
                roles.setdefault(role, []).extend(found)
                claimed.update({c: role for c in found})


def _many(role: str) -> bool:
    """Whether a modality takes several columns as several inputs (text, image, ...), rather
    than one column (or all of its columns as one input)."""
    mod = MODALITIES.get(role)
    return bool(mod.one_input_per_column and not mod.claims_rest)


def id_named(name: str) -> bool:
    """Named like a row identifier: ``id``, ``uuid``, ``row``, ``..._id`` ..."""
    low = name.strip().lower()
    return low in ID_NAMES or low.endswith("_id") or bool(UNNAMED.match(low))


def id_like(name: str, col: pd.Series) -> bool:
    """A row identifier, never a feature: named like one (``id``, ``..._id``, pandas' saved
    index ``Unnamed: 0``, which has gaps once rows were filtered), or unique per row and either
    strings or consecutive whole numbers (1, 2, 3, ... in any order: a row counter, which leaks
    the label of a file once sorted by it; keeping shuffled ones as a rank was measured on
    imdb's ``Rank`` and gained nothing: BENCHMARKS.md). Strings that are dates, times or
    written numbers (``2023-01-05``, ``$1,234.50``) are values, unique or not."""
    from autofusion.modalities.tabular import numbers

    if id_named(name):
        return True
    values = col.dropna()
    if len(values) < 2 or len(values) < len(col) or values.astype(str).nunique() < len(values):
        return False
    nums = numbers(values)
    if not np.isfinite(nums).all():
        return True
    return bool((nums == np.round(nums)).all() and nums.max() - nums.min() + 1 == len(values))

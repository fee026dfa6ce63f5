"""Raw request rows -> the model's inputs, with the same code training used: each modality's
decoder or encoder (``autofusion.modalities``) with the settings and fitted state saved in
the model, and each encoder's fitted feature extractor (``autofusion.models.extractors``).

Input columns are named after the model's inputs (``image``, ``text``; ``frontal`` and
``kitchen`` for several image columns), or after the manifest columns they came from.
Image, audio and video cells are file paths, or the file's bytes base64-encoded (optionally
as a ``data:...;base64,`` URI), so a REST client can send them.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from autofusion.data.arrays import per_distinct
from autofusion.data.prepare import DataMeta
from autofusion.data.rows import InputSpec
from autofusion.modalities import MODALITIES, DecodeError
from autofusion.modalities.text import join_fields
from autofusion.models.extractors import rows


def source(cell: Any) -> Any:
    """A path, or the bytes of a base64 / data-URI cell."""
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    text = str(cell).strip()
    is_uri = text.startswith("data:") and "," in text
    if is_uri:
        text = text.split(",", 1)[1]
    elif len(text) < 64 or _is_file(text):
        return Path(text)
    try:
        # line-wrapped base64 (MIME, the base64 tool) is still base64
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        if is_uri:
            raise DecodeError("the data: URI does not hold valid base64") from None
        raise DecodeError("no such file, nor valid base64") from None


def _is_file(text: str) -> bool:
    """Whether ``text`` names an existing file. A long base64 cell is no path: stat() fails on it with
    "File name too long" (ENAMETOOLONG), which ``Path.exists`` raises instead of returning False."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def describe(src: Any) -> str:
    """Names a cell in an error: the path tried (shortened), or the size of the decoded bytes."""
    if isinstance(src, bytes):
        return f"{len(src)} bytes of base64 data"
    text = str(src)
    return repr(text if len(text) <= 120 else text[:117] + "...")


def missing(cell: Any) -> bool:
    if cell is None or cell is pd.NA:
        return True
    return (isinstance(cell, float) and np.isnan(cell)) or (isinstance(cell, str) and not cell.strip())


def expected_columns(meta: DataMeta) -> list[str]:
    """The columns a request must have: one per single-column input, every column of a
    multi-column input."""
    out: list[str] = []
    for spec in meta.input_specs:
        if not spec.joined:  # a joined input reads the columns of the modality's other inputs
            out.extend([spec.name] if len(spec.columns) <= 1 or _one_per_column(spec) else spec.columns)
    return out


def _one_per_column(spec: InputSpec) -> bool:
    return getattr(MODALITIES.get(spec.modality), "one_input_per_column", True)


def _cells(df: pd.DataFrame, spec: InputSpec, meta: DataMeta) -> pd.Series | pd.DataFrame:
    if spec.joined:  # the text fields joined as training joined them
        lacking = [c for c in spec.columns if c not in df.columns]
        if lacking:
            raise ValueError(f"input lacks the {lacking[0]!r} column; expected columns: "
                             f"{', '.join(expected_columns(meta))}")
        return join_fields(df[list(spec.columns)].reset_index(drop=True))
    if not _one_per_column(spec):
        lacking = [c for c in spec.columns if c not in df.columns]
        if lacking:
            raise ValueError(f"input lacks the {lacking[0]!r} column; expected columns: "
                             f"{', '.join(expected_columns(meta))}")
        return df[list(spec.columns)].reset_index(drop=True)
    for name in (spec.name, *spec.columns):
        if name in df.columns:
            return df[name].reset_index(drop=True)
    raise ValueError(f"input lacks the {spec.name!r} column; expected columns: {', '.join(expected_columns(meta))}")


def model_inputs(df: pd.DataFrame, meta: DataMeta, feature_keys: dict[str, str | None],
                 extractors: dict[str, Any], cache: dict[Any, Any] | None = None,
                 fresh: frozenset[str] = frozenset()) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Batch tensors (and presence masks) for the model from raw request rows.

    ``cache`` (per request) keeps each input's arrays by input and feature key: the modality's
    own arrays and an extractor's (one search fits one extractor per key) do not depend on the
    member, so the members of an ensemble decode and tokenise each cell once, and importance
    passes reuse them. Inputs in ``fresh`` have cells changed on purpose (a field blanked or
    shuffled) and may be empty anywhere; their caller passes the pass's own cache
    (``serving.perturb.pass_cache``) or none.

    Raises:
        ValueError: a missing column, an empty cell where the modality may not be missing, or
            a file that cannot be read (the message names the row and the cell).
    """
    inputs: dict[str, Any] = {}
    present: dict[str, torch.Tensor] = {}
    for spec in (s for s in meta.input_specs if s.name in feature_keys):  # the inputs this model reads
        mod = MODALITIES.get(spec.modality)
        cells = _cells(df, spec, meta)
        if mod.empty_is_value(meta.prep[spec.modality]):  # an empty text is a text
            here = np.ones(len(cells), dtype=bool)
        elif isinstance(cells, pd.DataFrame):
            here = mod.present(cells)
        else:
            here = np.array([not missing(c) for c in cells], dtype=bool)
        if (not here.all() and spec.modality not in meta.allow_missing and _one_per_column(spec)
                and spec.name not in fresh):
            raise ValueError(f"row {int(np.flatnonzero(~here)[0]) + 1}: empty {spec.name!r} cell")
        key = feature_keys.get(spec.name)
        present[spec.name] = torch.from_numpy(here)
        kept = cache is not None
        if kept and (spec.name, key) in cache:
            inputs[spec.name] = cache[(spec.name, key)]
            continue
        if mod.file_based:
            cells = _sources(cells, here, spec.name, mod)
        if key is not None:
            arrays = rows(per_distinct(cells, extractors[key].transform), np.arange(len(cells)))  # once per distinct cell
            parts = {k: torch.from_numpy(v) for k, v in arrays.items()}
            inputs[spec.name] = parts["x"] if list(parts) == ["x"] else parts
        elif mod.file_based:
            decoded = per_distinct(cells, lambda u: {"x": _decoded(mod, meta.prep[spec.modality], u, u.notna().to_numpy(),
                                                                    spec.name)})["x"]  # each distinct file once
            inputs[spec.name] = torch.from_numpy(np.asarray(decoded))
        else:
            state = meta.states.get(spec.modality, {})
            inputs[spec.name] = torch.from_numpy(mod.encode(cells, meta.prep[spec.modality], state))
        if kept:
            cache[(spec.name, key)] = inputs[spec.name]
    return inputs, present


def _sources(cells: pd.Series, here: np.ndarray, name: str, mod: Any) -> pd.Series:
    """File cells as paths or bytes (None where empty; a cell holding the data itself, such as
    sensor readings, as it is); a bad base64 cell names its row."""
    inline = getattr(mod, "inline", None)
    out: list[Any] = []
    for i, (c, h) in enumerate(zip(cells, here)):
        if not h or (inline is not None and inline(c)):
            out.append(c if h else None)
            continue
        try:
            out.append(source(c))
        except DecodeError as exc:
            raise ValueError(f"row {i + 1}: {name}: {exc} ({describe(c)})") from None
    return pd.Series(out, dtype=object)


def _decoded(mod: Any, prep: dict, sources: pd.Series, here: np.ndarray, name: str) -> np.ndarray:
    batch = []
    for i, (src, h) in enumerate(zip(sources, here)):
        if not h:
            batch.append(mod.empty(prep))
            continue
        try:
            batch.append(mod.decode(src, prep))
        except DecodeError as exc:
            raise ValueError(f"row {i + 1}: {name}: {exc} ({describe(src)})") from None
    return np.stack(batch)

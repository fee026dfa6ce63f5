"""Rows that share a file (or a text) hold it once: an input's arrays are its distinct
entries plus a row index, and ``a[sel]`` gathers rows from them. Decoding, feature
extraction and the trials' batches all work on the distinct entries.

How the arrays reach the trials: an :class:`IndexedRows` pickles its distinct entries as a
plain array (Ray's object store holds one copy per node, each trial reads it without a
copy), except a memory-mapped cache file larger than ``AUTOFUSION_MMAP_SHARE`` (default
0.1) of this machine's memory, which pickles as its path: every trial maps the same file
(one copy in the page cache, none in the object store). On a cluster such a file must be
readable at the same path on every node (README: "Caches on a cluster").
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import numpy as np
import pandas as pd

from autofusion.errors import DataError

DEFAULT_MMAP_SHARE = 0.1


class IndexedRows:
    """Rows ``[N, ...]`` stored as distinct entries ``values`` ``[U, ...]`` (a numpy array,
    a memory-mapped cache file or a scipy sparse matrix) and ``index`` ``[N]``: row ``i`` is
    ``values[index[i]]``.

    Indexing with rows gathers them (a dense array, or a sparse matrix for sparse values);
    :meth:`take` keeps a subset of rows without touching the entries.
    """

    __slots__ = ("values", "index")

    def __init__(self, values: Any, index: np.ndarray) -> None:
        self.values = values
        self.index = np.asarray(index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.values.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes held: the distinct entries (a sparse matrix's stored values and indices) and the index."""
        v = self.values
        held = v.nbytes if hasattr(v, "nbytes") else sum(getattr(v, a).nbytes for a in ("data", "indices", "indptr"))
        return int(held + self.index.nbytes)

    @property
    def distinct(self) -> int:
        """How many distinct entries the rows share."""
        return int(self.values.shape[0])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, sel: Any) -> Any:
        rest: tuple = ()
        if isinstance(sel, tuple):  # rows, then positions within a row
            sel, rest = sel[0], sel[1:]
        rows = self.index[sel]
        if isinstance(self.values, np.memmap) and np.ndim(rows) == 1 and len(rows) > 1:
            entries, back = np.unique(rows, return_inverse=True)  # each entry read once, in file order
            out = np.asarray(self.values[entries])[back]
        else:
            out = self.values[rows]
        if not rest:
            return out
        return out[(slice(None), *rest)] if np.ndim(rows) else out[rest]

    def take(self, rows: np.ndarray) -> "IndexedRows":
        """The subset ``rows`` (positions in this array), sharing the same entries."""
        return IndexedRows(self.values, self.index[rows])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(len(self.index))]
        out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"IndexedRows(shape={self.shape}, dtype={self.dtype}, distinct={self.distinct})"

    def __reduce__(self) -> tuple:
        return _rebuild, (portable(self.values), self.index)


def take_rows(a: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of ``a``: a view for :class:`IndexedRows`, a copy for a plain array."""
    return a.take(rows) if isinstance(a, IndexedRows) else a[rows]


def mmap_share() -> float:
    """``AUTOFUSION_MMAP_SHARE``: the share of memory above which a cached file stays on disk."""
    raw = os.environ.get("AUTOFUSION_MMAP_SHARE", "")
    try:
        return float(raw) if raw.strip() else DEFAULT_MMAP_SHARE
    except ValueError:
        raise DataError(f"AUTOFUSION_MMAP_SHARE={raw!r}: give a share of memory such as 0.1") from None


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def portable(values: Any) -> Any:
    """What travels for ``values``: ``("mapped", path, offset, dtype, shape)`` for a cache file
    above the share of memory, else the values as a plain array (a memmap would be copied
    into the pickle stream and into every trial; a plain array travels out of band)."""
    if isinstance(values, np.memmap) and getattr(values, "filename", None):
        if values.nbytes > mmap_share() * memory_bytes():
            return ("mapped", str(values.filename), int(values.offset), values.dtype.str, tuple(values.shape))
        return np.asarray(values)
    return values


def _rebuild(values: Any, index: np.ndarray) -> IndexedRows:
    if isinstance(values, tuple) and values and values[0] == "mapped":
        _, path, offset, dtype, shape = values
        try:
            values = np.memmap(path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=tuple(shape))
        except OSError as exc:
            raise DataError(f"cannot read the cache file {path} on this node ({exc.strerror or exc}); put "
                            "AUTOFUSION_HOME on storage every node mounts at the same path") from None
    return IndexedRows(values, index)


def distinct_cells(cells: Any) -> tuple[np.ndarray, list[Any]]:
    """The distinct cells of ``cells`` in order of first appearance (an empty cell, None, is one
    of them) and each cell's position among them."""
    values = list(cells)
    try:
        codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    except TypeError:  # unhashable cells (readings given as lists): each its own
        return np.arange(len(values), dtype=np.int64), [None if _missing(u) else u for u in values]
    return codes.astype(np.int64, copy=False), [None if _missing(u) else u for u in uniques]


def _missing(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and np.isnan(cell))


def per_distinct(cells: Any, fn: Callable[[pd.Series], dict[str, Any]]) -> dict[str, Any]:
    """``fn`` (raw cells -> arrays with one row per cell) run once per distinct cell; its
    arrays as :class:`IndexedRows` over the cells. A frame of several columns goes to ``fn``
    whole. A ``ValueError("row K: ...")`` of ``fn`` names the first row holding that cell."""
    if isinstance(cells, pd.DataFrame):
        return fn(cells)
    codes, uniques = distinct_cells(cells)
    try:
        out = fn(pd.Series(uniques, dtype=object))
    except ValueError as exc:  # "row K: ..." names a distinct cell: name the first row holding it
        found = re.match(r"row (\d+)(.*)", str(exc), re.S)
        if type(exc) is not ValueError or not found:
            raise
        first = int(np.flatnonzero(codes == int(found.group(1)) - 1)[0]) + 1
        raise ValueError(f"row {first}{found.group(2)}") from None
    return {k: IndexedRows(v, codes) for k, v in out.items()}

"""One importance pass over request rows: an input taken away, the same way for every member
of an ensemble (``serving.importance`` makes them; a served member applies them).

Two standard ways, and the report says which is which:

* **removal**: the input is left out as the model reads a missing one. A whole input is
  marked absent (``present`` False: the fusion operator zeroes and masks it, or the learned
  missing vector stands in, ``models/missing.py``); one column of a multi-column input (a
  tabular field, a text field inside a joined text) has its cells blanked.
* **permutation**: its values shuffled across the rows with one seeded permutation, so every
  row gets another row's value (Breiman's permutation importance).

A whole input the member reads itself is changed on its arrays (``tensors``: nothing is
decoded or embedded again); anything read from the perturbed columns by another way (a
joined text, a field) is read again from the changed cells (``frame``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

from autofusion.search.records import PERMUTATION, REMOVAL


@dataclass(frozen=True)
class Perturbation:
    """What one pass changes.

    Args:
        input: the request input (``image``, ``frontal``, ``tabular``), or the field's input.
        columns: the request columns it changes (the input's name and the columns it was trained from).
        kind: ``removal`` or ``permutation``.
        order: the rows' permutation (``permutation``).
        field: True when only a field (one column of a multi-column input) changes.
    """

    input: str
    columns: tuple[str, ...]
    kind: str
    order: np.ndarray | None = None
    field: bool = False

    def __post_init__(self) -> None:
        if self.kind not in (REMOVAL, PERMUTATION) or (self.kind == PERMUTATION) != (self.order is not None):
            raise ValueError(f"a perturbation is a removal or a permutation with its order, not {self.kind!r}")

    def whole(self, name: str) -> bool:
        """Whether model input ``name`` is the perturbed input itself, changed on its arrays."""
        return not self.field and name == self.input

    def touches(self, name: str, columns: tuple[str, ...]) -> bool:
        """Whether model input ``name`` reading ``columns`` must be read again from :meth:`frame`."""
        return not self.whole(name) and bool(set(columns) & set(self.columns))

    def read_again(self, meta: Any, names: Iterable[str]) -> frozenset[str]:
        """The model inputs among ``names`` (those a member reads) to read from :meth:`frame`:
        all but the perturbed input itself, which :meth:`tensors` changes."""
        names = set(names)
        return frozenset(s.name for s in meta.input_specs
                         if s.name in names and self.touches(s.name, (s.name, *s.columns)))

    def changed(self, meta: Any, names: Iterable[str]) -> frozenset[str]:
        """Every model input among ``names`` the pass changes: what a member that applies it on
        the cells alone (:meth:`frame`, no :meth:`tensors`) reads again, empty cells allowed
        (``model_inputs(..., fresh=...)``)."""
        names = set(names)
        return self.read_again(meta, names) | ({self.input} & names if not self.field else frozenset())

    @property
    def key(self) -> tuple:
        """What tells this pass from another (its permutation's rows included)."""
        return (self.input, self.columns, self.kind, self.field, None if self.order is None else self.order.tobytes())

    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """The request rows with the perturbed columns blanked or shuffled."""
        out = df.copy()
        for c in self.columns:
            if c in out.columns:
                out[c] = [None] * len(out) if self.kind == REMOVAL else out[c].to_numpy()[self.order]
        return out

    def tensors(self, x: Any, present: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """An input's batch arrays and presence after the pass: absent everywhere, or rows reordered."""
        if self.kind == REMOVAL:
            return x, torch.zeros_like(present)
        idx = torch.from_numpy(np.asarray(self.order, dtype=np.int64))
        return take(x, idx), present[idx]


PASS = ("importance pass",)  # the request cache's key of the current pass's own cache


def pass_cache(cache: dict[Any, Any] | None, perturb: Perturbation | None) -> dict[Any, Any] | None:
    """The part of a request cache that holds what one pass reads anew (the inputs read from
    its changed cells, their backbones' outputs): shared by the members of an ensemble within
    the pass, dropped when the next pass starts. None without a cache or a pass."""
    if cache is None or perturb is None:
        return None
    held = cache.get(PASS)
    if held is None or held[0] != perturb.key:
        held = cache[PASS] = (perturb.key, {})
    return held[1]


def take(x: Any, idx: torch.Tensor | slice) -> Any:
    """Rows ``idx`` of a batch: a tensor, or a dict of them (token ids and mask, backbone outputs)."""
    if isinstance(x, dict):
        return {k: take(v, idx) for k, v in x.items()}
    return x[idx]


def num_rows(x: Any) -> int:
    """Rows of a batch: a tensor, or a dict of them."""
    return num_rows(next(iter(x.values()))) if isinstance(x, dict) else int(x.shape[0])

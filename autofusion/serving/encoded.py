"""Importance passes over encoder features: each input of a served model is encoded once per
request, and each pass that takes one input away runs the fusion operator and the head only.

A model's encoders read each input on its own, row by row (eval mode: no batch statistics, no
dropout), so an input's features over shuffled rows are its features shuffled, and the other
inputs' features do not change: a pass needs the perturbed input's features changed
(``serving.perturb``: rows reordered, or marked absent) or, for cells read again (a field, a
joined text), that input encoded anew. The model then reads the features in place of its
inputs (:func:`reading_features`: its adapters and encoders stand aside for the pass), so the
fusion operator, the missing-input handling and the head run exactly as in a prediction.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from autofusion.serving.perturb import num_rows, take


class _Given(nn.Module):
    """Stands in for an encoder during a pass: what it is given is already its features
    (pooled ``[B, D]``, or ``{"tokens", "pad"}`` for token-level fusion)."""

    def forward(self, x: Any) -> Any:
        return x

    def tokens(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return x["tokens"], x.get("pad")


@torch.no_grad()
def encoded(model: nn.Module, inputs: dict[str, Any], names: Iterable[str], batch: int) -> dict[str, Any]:
    """The features the fusion operator reads for inputs ``names``, every row, ``batch`` rows at a time."""
    out: dict[str, Any] = {}
    for name in names:
        enc = model.encoders[model.encoder_of[name]]
        n = num_rows(inputs[name])
        parts = []
        for start in range(0, max(n, 1), batch):
            x = model.encoder_input(name, take(inputs[name], slice(start, start + batch)))
            if model.fusion.uses_tokens:
                toks, pad = enc.tokens(x)
                parts.append({"tokens": toks, **({"pad": pad} if pad is not None else {})})
            else:
                parts.append(enc(x))
        out[name] = ({k: torch.cat([p[k] for p in parts]) for k in parts[0]} if isinstance(parts[0], dict)
                     else torch.cat(parts))
    return out


@contextlib.contextmanager
def reading_features(model: nn.Module) -> Iterator[None]:
    """The model reads encoder features as its inputs for the block (see the module doc)."""
    adapters, encoders = model.adapters, model.encoders
    model.adapters = nn.ModuleDict({k: nn.Identity() for k in adapters})
    model.encoders = nn.ModuleDict({k: _Given() for k in encoders})
    try:
        yield
    finally:
        model.adapters, model.encoders = adapters, encoders

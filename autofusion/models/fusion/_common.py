"""Helpers the fusion operators build with: projections per input, weighted sums and the
weights' scaling, rounding a width to a multiple of the heads, and letting an attention row
whose every key is masked see one (masking absent inputs and pooling live in
``models/masking.py``; every forward starts from ``Fusion.open``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


def unmask_empty_rows(mask: Tensor) -> Tensor:
    """Lets rows whose every key is masked see position 0, so attention softmax is not NaN.

    Callers must discard what such rows attend to (it is a zeroed or padded token).
    """
    empty = mask.all(dim=1)
    if not bool(empty.any()):
        return mask
    mask = mask.clone()
    mask[empty, 0] = False
    return mask


def relative_weights(w: Tensor, pm: Tensor) -> Tensor:
    """Scales weights ``[B, M]`` by the number present, so equal weights become exactly 1."""
    return w * pm.sum(dim=1, keepdim=True)


def weighted_sum(xs: Sequence[Tensor], w: Tensor) -> Tensor:
    """``sum_m w[:, m] * xs[m]`` for ``xs`` of shape ``[B, D]`` and ``w`` ``[B, M]``."""
    return torch.einsum("bm,bmd->bd", w, torch.stack(list(xs), dim=1))


def round_up(dim: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` >= ``dim`` (attention needs dim % heads == 0)."""
    return multiple * max(1, math.ceil(dim / multiple))


def projections(
    in_dims: Mapping[str, int], dim: int, act: type[nn.Module] | None = None
) -> nn.ModuleList:
    """One ``Linear(D_m, dim)`` (optionally followed by ``act()``) per input, in order."""
    layers: list[nn.Module] = []
    for d in in_dims.values():
        lin = nn.Linear(d, dim)
        layers.append(lin if act is None else nn.Sequential(lin, act()))
    return nn.ModuleList(layers)

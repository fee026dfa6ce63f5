"""Helpers shared by the fusion operators: masking missing modalities, pooling, weighting.

Every operator zeroes a missing modality's inputs first (``torch.where``, so even inf/NaN
garbage cannot leak), then masks it wherever modalities meet (keys, gates, sums).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from autofusion.models.base import present_matrix


def batch_info(feats: Mapping[str, object]) -> tuple[int, torch.device]:
    """Batch size and device of pooled or token features."""
    f = next(iter(feats.values()))
    t = f[0] if isinstance(f, (tuple, list)) else f
    return t.shape[0], t.device


def presence(
    modalities: Sequence[str], present: Mapping[str, Tensor], batch: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Returns the presence matrix ``[B, M]`` as floats (for ModalityWeights) and as bools."""
    pm = present_matrix(list(modalities), dict(present), batch, device)
    return pm, pm > 0


def zero_missing(x: Tensor, keep: Tensor) -> Tensor:
    """Rows of ``x`` (batch first, any rank) where ``keep`` ``[B]`` is False become zeros."""
    keep = keep.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over dim 1 of ``[B, T, D]`` skipping ``mask`` (True = skip); all-masked rows give 0."""
    if mask is None:
        return tokens.mean(dim=1)
    keep = (~mask).unsqueeze(-1).to(tokens.dtype)
    return (tokens * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


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


def pooled_inputs(
    feats: Mapping[str, Tensor], modalities: Sequence[str], keep: Tensor
) -> list[Tensor]:
    """Pooled ``[B, D_m]`` features per modality, zeroed where the modality is missing."""
    return [zero_missing(feats[m], keep[:, i]) for i, m in enumerate(modalities)]


def token_inputs(
    feats: Mapping[str, object], modalities: Sequence[str], keep: Tensor
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Splits token features into tokens, masks and pooled vectors, per modality.

    Returns:
        tokens ``[B, T_m, D_m]`` zeroed where missing; masks ``[B, T_m]`` (True = ignore:
        padding, or every position of a missing modality); masked means ``[B, D_m]``.
    """
    toks, masks, pooled = [], [], []
    for i, m in enumerate(modalities):
        f = feats[m]
        t, pad = f if isinstance(f, (tuple, list)) else (f, None)
        k = keep[:, i]
        t = zero_missing(t, k)
        mask = (~k).unsqueeze(1).expand(-1, t.shape[1])
        if pad is not None:
            mask = mask | pad.to(torch.bool)
        toks.append(t)
        masks.append(mask)
        pooled.append(masked_mean(t, mask))
    return toks, masks, pooled


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
    """One ``Linear(D_m, dim)`` (optionally followed by ``act()``) per modality, in order."""
    layers: list[nn.Module] = []
    for d in in_dims.values():
        lin = nn.Linear(d, dim)
        layers.append(lin if act is None else nn.Sequential(lin, act()))
    return nn.ModuleList(layers)

"""Missing inputs and padding, in one place: an absent input's features are zeroed
(``torch.where``, so even inf/NaN garbage cannot leak) and masked wherever inputs meet;
padding and absence are masks with True = ignore; one masked mean pools tokens for the
encoders, the model and every fusion operator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over dim 1 of ``[B, T, D]`` skipping ``mask`` ``[B, T]`` (True = skip: padding, or
    an absent input); an all-masked row gives 0."""
    if mask is None:
        return tokens.mean(dim=1)
    keep = (~mask.to(torch.bool)).unsqueeze(-1).to(tokens.dtype)
    return (tokens * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def zero_missing(x: Tensor, keep: Tensor) -> Tensor:
    """Rows of ``x`` (batch first, any rank) where ``keep`` ``[B]`` is False become zeros."""
    keep = keep.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def batch_info(feats: Mapping[str, object]) -> tuple[int, torch.device]:
    """Batch size and device of pooled or token features."""
    f = next(iter(feats.values()))
    t = f[0] if isinstance(f, (tuple, list)) else f
    return t.shape[0], t.device


def presence(inputs: Sequence[str], present: Mapping[str, Tensor], batch: int,
             device: torch.device) -> tuple[Tensor, Tensor]:
    """The presence matrix ``[B, M]`` as floats (for the input weights) and as bools; an input
    without a mask counts as present."""
    cols = [present[m].float() if m in present else torch.ones(batch, device=device) for m in inputs]
    pm = torch.stack(cols, dim=1)
    return pm, pm > 0


def pooled_inputs(feats: Mapping[str, Tensor], inputs: Sequence[str], keep: Tensor) -> list[Tensor]:
    """Pooled ``[B, D_m]`` features per input, zeroed where the input is absent."""
    return [zero_missing(feats[m], keep[:, i]) for i, m in enumerate(inputs)]


def token_inputs(feats: Mapping[str, object], inputs: Sequence[str],
                 keep: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Token features split into tokens, masks and pooled vectors, per input.

    Returns:
        tokens ``[B, T_m, D_m]`` zeroed where absent; masks ``[B, T_m]`` (True = ignore:
        padding, or every position of an absent input); their masked means ``[B, D_m]``.
    """
    toks, masks, pooled = [], [], []
    for i, m in enumerate(inputs):
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

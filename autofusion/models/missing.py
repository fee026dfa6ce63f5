"""Learned stand-ins for missing inputs (``train.missing: learned``).

With ``zero`` (the default) a row that lacks an input has it zeroed and masked inside the
fusion operator (``models/masking.py``). With ``learned``, each input has a learned vector
(its encoder's width) that replaces the input where a row lacks it, before fusion, and the
fusion operator is told every input is present: the model learns what "no image" should
mean instead of reading a zero. Rows lack an input when the data has an empty cell
(``data.allow_missing``) or when modality dropout drops it while training, which is how the
vectors are learned; at prediction time the logged model uses them for empty cells.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autofusion.errors import ConfigError
from autofusion.trial import MISSING_MODES


class MissingEmbeddings(nn.Module):
    """One learned vector per input, substituted where ``present`` is False.

    Pooled features ``[B, D]`` become the vector; token features ``([B, T, D], pad)``
    become the vector as one token (position 0, the other positions padded). The vectors
    start at zero, the value zero-filling gives, and are trained from there.

    Args:
        in_dims: the encoder's output width per input.
    """

    def __init__(self, in_dims: dict[str, int]) -> None:
        super().__init__()
        self.vectors = nn.ParameterDict({name: nn.Parameter(torch.zeros(d)) for name, d in in_dims.items()})

    def forward(self, feats: dict[str, object], present: dict[str, Tensor]
                ) -> tuple[dict[str, object], dict[str, Tensor]]:
        """The features with absent inputs replaced, and presence all True."""
        out: dict[str, object] = {}
        for name, f in feats.items():
            keep = present[name].to(torch.bool)
            if name not in self.vectors or bool(keep.all()):
                out[name] = f
            elif isinstance(f, (tuple, list)):
                out[name] = _substitute_tokens(f[0], f[1], keep, self.vectors[name])
            else:
                out[name] = torch.where(keep.unsqueeze(1), f, self.vectors[name].to(f.dtype).expand_as(f))
        return out, {name: torch.ones_like(p, dtype=torch.bool) for name, p in present.items()}


def _substitute_tokens(toks: Tensor, pad: Tensor | None, keep: Tensor, vec: Tensor) -> tuple[Tensor, Tensor]:
    """Rows not kept become one learned token: ``vec`` everywhere, every position but the first padded."""
    toks = torch.where(keep.view(-1, 1, 1), toks, vec.to(toks.dtype).expand_as(toks))
    later = (torch.arange(toks.shape[1], device=toks.device) > 0).unsqueeze(0).expand(toks.shape[0], -1)
    old = pad.to(torch.bool) if pad is not None else torch.zeros_like(later)
    return toks, torch.where(keep.unsqueeze(1), old, later)


def missing_embeddings(mode: str, in_dims: dict[str, int]) -> MissingEmbeddings | None:
    """The module ``train.missing`` asks for: None for ``zero`` (the fusion operator masks)."""
    if mode not in MISSING_MODES:
        raise ConfigError(f"unknown train.missing {mode!r}; known: {', '.join(MISSING_MODES)}")
    return MissingEmbeddings(in_dims) if mode == "learned" else None

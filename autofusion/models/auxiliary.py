"""Heads that only training uses: the alignment projections with their temperature
(``train.align_weight``) and the cross-modal reconstruction predictors
(``train.reconstruct_weight``). Their losses are in ``autofusion.train.alignment`` and
``autofusion.train.reconstruction``.

They are part of the :class:`~autofusion.models.build.FusionModel` (``model.train_heads``)
rather than of the training hooks, so the one optimizer, the learning-rate schedule (warm-up
included), gradient clipping, mixed precision and ``model.to(device)`` treat them like every
other weight, and a checkpoint restores them; predictions never read them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGN_DIM = 64  # width of the shared embedding space of the alignment loss (CLIP uses 512 at scale)
ALIGN_INIT_TEMPERATURE = 0.07  # CLIP's initial temperature
ALIGN_MAX_SCALE = 100.0  # CLIP clamps 1 / temperature at 100


class AlignmentHeads(nn.Module):
    """A linear projection per input into one shared space, and a learnable temperature.

    Args:
        in_dims: the encoder's output width per input.
        dim: width of the shared space.
    """

    def __init__(self, in_dims: dict[str, int], dim: int = ALIGN_DIM) -> None:
        super().__init__()
        self.proj = nn.ModuleDict({name: nn.Linear(d, dim, bias=False) for name, d in in_dims.items()})
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / ALIGN_INIT_TEMPERATURE)))

    def forward(self, pooled: dict[str, Tensor]) -> dict[str, Tensor]:
        """L2-normalised projections ``[B, dim]`` of each input's pooled features."""
        return {name: F.normalize(self.proj[name](x.float()), dim=-1) for name, x in pooled.items()
                if name in self.proj}

    def scale(self) -> Tensor:
        """``1 / temperature``, clamped to at most 100 as in CLIP."""
        return self.log_scale.clamp(max=math.log(ALIGN_MAX_SCALE)).exp()


class ReconstructionHeads(nn.Module):
    """Per input, an MLP that predicts its pooled features from the other inputs' pooled
    features (zeroed where a row lacks them) and their presence flags: the cross-modal half
    of a multimodal autoencoder, in embedding space.

    Args:
        in_dims: the encoder's output width per input (at least two inputs).
        hidden: the MLPs' hidden width.
    """

    def __init__(self, in_dims: dict[str, int], hidden: int = 128) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.predict = nn.ModuleDict()
        for name, d in in_dims.items():
            width = sum(w + 1 for other, w in in_dims.items() if other != name)
            self.predict[name] = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d))

    def forward(self, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each input's predicted pooled features ``[B, D]`` from the others."""
        out = {}
        for name, head in self.predict.items():
            parts = []
            for other in self.in_dims:
                if other == name:
                    continue
                keep = present[other].to(torch.bool).unsqueeze(1)
                x = pooled[other].float()
                parts += [torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)), keep.to(x.dtype)]
            out[name] = head(torch.cat(parts, dim=1))
        return out


def train_heads(in_dims: dict[str, int], align_weight: float, reconstruct_weight: float) -> dict[str, nn.Module]:
    """The training-only heads a trial asks for (none with fewer than two inputs)."""
    if len(in_dims) < 2:
        return {}
    heads: dict[str, nn.Module] = {}
    if align_weight > 0:
        heads["align"] = AlignmentHeads(in_dims)
    if reconstruct_weight > 0:
        heads["reconstruct"] = ReconstructionHeads(in_dims)
    return heads

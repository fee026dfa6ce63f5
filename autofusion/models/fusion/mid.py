"""Mid (intermediate) fusion: concatenation of projected, weighted pooled features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autofusion.components import Size
from autofusion.models.base import Fusion, register_fusion
from autofusion.models.fusion._common import (
    batch_info,
    pooled_inputs,
    presence,
    projections,
    relative_weights,
)


@register_fusion("mid")
class MidFusion(Fusion):
    """Concatenates each modality's pooled vector after a ``Linear+ReLU`` to ``dim``.

    The simplest strong baseline; modality weights scale each block (equal weights = 1,
    a missing modality's block is 0).
    """

    def __init__(
        self, in_dims: dict[str, int], num_outputs: int, weights: str = "fixed", *, dim: Size = 64
    ) -> None:
        super().__init__(in_dims, num_outputs, weights)
        self.proj = projections(in_dims, dim, act=nn.ReLU)
        self.out_dim = dim * len(in_dims)

    def forward(self, feats: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        pm, keep = presence(self.modalities, present, *batch_info(feats))
        xs = pooled_inputs(feats, self.modalities, keep)
        r = relative_weights(self.weighting(xs, pm), pm)
        blocks = [p(x) * r[:, i : i + 1] for i, (p, x) in enumerate(zip(self.proj, xs))]
        return torch.cat(blocks, dim=-1)

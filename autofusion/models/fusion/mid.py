"""Mid (intermediate) fusion: concatenation of projected, weighted pooled features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autofusion.components import Size
from autofusion.models.base import Fusion, register_fusion
from autofusion.models.fusion._common import projections, relative_weights


@register_fusion("mid")
class MidFusion(Fusion):
    """Concatenates each modality's pooled vector after a ``Linear+ReLU`` to ``dim``.

    The simplest strong baseline; modality weights scale each block (equal weights = 1,
    a missing modality's block is 0).
    """

    def __init__(
        self, in_dims: dict[str, int], num_outputs: int, weighting: str = "fixed", *, dim: Size = 64
    ) -> None:
        super().__init__(in_dims, num_outputs, weighting)
        self.proj = projections(in_dims, dim, act=nn.ReLU)
        self.out_dim = dim * len(in_dims)

    def forward(self, feats: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        x = self.open(feats, present)
        r = relative_weights(x.weights, x.present)
        blocks = [p(v) * r[:, i : i + 1] for i, (p, v) in enumerate(zip(self.proj, x.pooled))]
        return torch.cat(blocks, dim=-1)

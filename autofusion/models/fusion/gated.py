"""Gated Multimodal Unit fusion (Arevalo et al. 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autofusion.components import Size
from autofusion.models.base import Fusion, register_fusion
from autofusion.models.fusion._common import projections


@register_fusion("gated")
class GatedMultimodalUnit(Fusion):
    """GMU (Arevalo et al. 2017): ``h_m = tanh(W_m x_m)``, per-dimension gates ``z`` from all
    inputs (softmax over the present modalities), output ``sum_m z_m * h_m``.

    The modality weights enter as a prior on the gates (``log w`` added to their logits), so
    equal weights leave the GMU unchanged.
    """

    def __init__(
        self, in_dims: dict[str, int], num_outputs: int, weighting: str = "fixed", *, dim: Size = 64
    ) -> None:
        super().__init__(in_dims, num_outputs, weighting)
        self.dim = dim
        self.hidden = projections(in_dims, dim, act=nn.Tanh)
        self.gate_z = nn.Linear(sum(in_dims.values()), len(in_dims) * dim)
        self.out_dim = dim

    def forward(self, feats: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        x = self.open(feats, present)
        h = torch.stack([f(v) for f, v in zip(self.hidden, x.pooled)], dim=1)  # [B, M, dim]
        z = self.gate_z(torch.cat(x.pooled, dim=-1)).view(x.batch, len(x.pooled), self.dim)
        z = z + torch.log(x.weights.clamp_min(1e-12)).unsqueeze(-1)
        z = z.masked_fill(~x.keep.unsqueeze(-1), -1e4)
        z = torch.softmax(z.float(), dim=1).to(h.dtype)
        return (z * h).sum(dim=1)

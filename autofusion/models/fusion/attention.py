"""Cross-modal attention fusion: each modality's tokens attend to the other modalities'."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autofusion.components import Rate, Size
from autofusion.models.base import Fusion, Tokens, register_fusion
from autofusion.models.fusion._common import (
    projections,
    round_up,
    unmask_empty_rows,
    weighted_sum,
)
from autofusion.models.masking import masked_mean


@register_fusion("attention")
class CrossModalAttention(Fusion):
    """Cross-modal attention (as in MulT, Tsai et al. 2019): queries from one modality,
    keys/values from all the others, then residual + LayerNorm (+ FFN), pooled per modality.

    ``dim`` is rounded up to a multiple of ``heads``.
    """

    uses_tokens = True
    min_inputs = 2  # each input attends to the others

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        weighting: str = "fixed",
        *,
        dim: Size = 64,
        heads: Size = 4,
        dropout: Rate = 0.1,
        ffn: bool = True,
    ) -> None:
        super().__init__(in_dims, num_outputs, weighting)
        dim = round_up(dim, heads)
        m = len(in_dims)
        self.proj = projections(in_dims, dim)
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) for _ in range(m)
        )
        self.norm1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(m))
        self.drop = nn.Dropout(dropout)
        self.ffn = (
            nn.ModuleList(
                nn.Sequential(
                    nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
                )
                for _ in range(m)
            )
            if ffn
            else None
        )
        self.norm2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(m)) if ffn else None
        self.out_dim = dim

    def forward(self, feats: dict[str, Tokens], present: dict[str, Tensor]) -> Tensor:
        x = self.open(feats, present)
        hs, masks = [p(t) for p, t in zip(self.proj, x.tokens)], x.masks

        parts = []
        for i, (h, mask) in enumerate(zip(hs, masks)):
            others = [j for j in range(len(hs)) if j != i]
            kv = torch.cat([hs[j] for j in others], dim=1)
            kmask = torch.cat([masks[j] for j in others], dim=1)
            # A row whose other modalities are all missing gets no cross-modal message.
            has_keys = (~kmask.all(dim=1)).to(h.dtype).view(-1, 1, 1)
            att, _ = self.attn[i](
                h, kv, kv, key_padding_mask=unmask_empty_rows(kmask), need_weights=False
            )
            y = self.norm1[i](h + self.drop(att) * has_keys)
            if self.ffn is not None and self.norm2 is not None:
                y = self.norm2[i](y + self.drop(self.ffn[i](y)))
            parts.append(masked_mean(y, mask))
        return weighted_sum(parts, x.weights)

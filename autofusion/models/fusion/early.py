"""Early (feature-level) fusion: one Transformer over every modality's tokens at once."""

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


@register_fusion("early")
class EarlyFusion(Fusion):
    """Joint Transformer encoder over the concatenated token sequences of all modalities.

    Tokens are projected to ``dim`` and tagged with a learned modality-type embedding
    (as in VisualBERT/ViLT single-stream models); each modality's outputs are mean-pooled
    and the pools combined by the modality weights.
    """

    uses_tokens = True

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        weighting: str = "fixed",
        *,
        dim: Size = 64,
        heads: Size = 4,
        layers: Size = 1,
        dropout: Rate = 0.1,
    ) -> None:
        super().__init__(in_dims, num_outputs, weighting)
        dim = round_up(dim, heads)
        self.proj = projections(in_dims, dim)
        self.type_embed = nn.Parameter(torch.randn(len(in_dims), dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = dim

    def forward(self, feats: dict[str, Tokens], present: dict[str, Tensor]) -> Tensor:
        x = self.open(feats, present)
        toks, masks = x.tokens, x.masks
        seq = torch.cat(
            [proj(t) + self.type_embed[i] for i, (proj, t) in enumerate(zip(self.proj, toks))],
            dim=1,
        )
        mask = torch.cat(masks, dim=1)
        out = self.encoder(seq, src_key_padding_mask=unmask_empty_rows(mask))

        # Pool each modality's segment apart so the modality weights can act on it.
        parts, start = [], 0
        for t, m in zip(toks, masks):
            end = start + t.shape[1]
            parts.append(masked_mean(out[:, start:end], m))
            start = end
        return weighted_sum(parts, x.weights)

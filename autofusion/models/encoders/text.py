"""Text encoders over ``[B, L]`` token ids (0 = padding), vocabulary built on train."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autofusion.components import Rate, Size
from autofusion.modalities import ModalityInfo
from autofusion.models.base import Encoder, Tokens, register_encoder


@register_encoder("embedding_bag", modality="text")
class EmbeddingBag(Encoder):
    """Mean of word embeddings: a strong, fast bag-of-words baseline."""

    def __init__(self, info: ModalityInfo, *, dim: Size = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(info.vocab_size, dim, padding_idx=0)
        self.out_dim = dim

    def tokens(self, x: Tensor) -> Tokens:
        return self.embed(x), x == 0


@register_encoder("bigru", modality="text")
class BiGRU(Encoder):
    """Bidirectional GRU over embeddings; tokens are its per-position outputs."""

    def __init__(
        self, info: ModalityInfo, *, dim: Size = 64, hidden: Size = 64, layers: Size = 1
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(info.vocab_size, dim, padding_idx=0)
        self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def tokens(self, x: Tensor) -> Tokens:
        out, _ = self.gru(self.embed(x))
        return out, x == 0


@register_encoder("transformer", modality="text")
class TextTransformer(Encoder):
    """A small Transformer encoder with learned positions."""

    def __init__(
        self, info: ModalityInfo, *, dim: Size = 64, heads: Size = 4, layers: Size = 2,
        dropout: Rate = 0.1,
    ) -> None:
        super().__init__()
        if dim % heads:
            dim = heads * max(1, round(dim / heads))
        self.embed = nn.Embedding(info.vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max(info.max_length, 1), dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = dim

    def tokens(self, x: Tensor) -> Tokens:
        pad = x == 0
        h = self.embed(x) + self.pos[:, : x.shape[1]]
        # An all-padding row (empty text) would make attention NaN: let it see position 0.
        safe_pad = pad.clone()
        safe_pad[:, 0] = False
        return self.encoder(h, src_key_padding_mask=safe_pad), safe_pad

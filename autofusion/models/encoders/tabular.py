"""Tabular encoders over the tabular modality's rows ``[B, 2 * numeric + categorical]``:
standardised numbers, their missing indicators, then one category id per categorical
column (0 missing, 1 unknown). ``info.extra`` says how many numbers there are and each
categorical column's number of ids."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from autofusion.components import Rate, Size
from autofusion.modalities import ModalityInfo
from autofusion.models.base import Encoder, Tokens, register_encoder


class _Split(nn.Module):
    """Splits a batch into numbers ``[B, k]``, missing indicators ``[B, k]`` and category ids ``[B, c]``."""

    def __init__(self, info: ModalityInfo) -> None:
        super().__init__()
        self.k = int(info.extra.get("numeric", 0))
        self.cards = [int(n) for n in info.extra.get("cardinalities", [])]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = x.float()
        k = self.k
        return x[:, :k], x[:, k:2 * k], x[:, 2 * k:].round().long()


@register_encoder("mlp", modality="tabular")
class TabularMLP(Encoder):
    """An MLP over the standardised numbers, their missing indicators and an embedding of each
    categorical column; one token.

    Args:
        hidden: width of each layer (and of the output).
        layers: hidden layers.
        embed_dim: width of each category embedding.
        dropout: dropout after each layer.
    """

    def __init__(self, info: ModalityInfo, *, hidden: Size = 128, layers: Size = 2, embed_dim: Size = 8,
                 dropout: Rate = 0.1) -> None:
        super().__init__()
        self.split = _Split(info)
        self.embeds = nn.ModuleList(nn.Embedding(n, embed_dim) for n in self.split.cards)
        width = 2 * self.split.k + embed_dim * len(self.split.cards)
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        self.mlp = nn.Sequential(*blocks)
        self.out_dim = hidden

    def forward(self, x: Tensor) -> Tensor:
        num, miss, cat = self.split(x)
        parts = [num, miss, *(e(cat[:, j]) for j, e in enumerate(self.embeds))]
        return self.mlp(torch.cat(parts, dim=1))

    def tokens(self, x: Tensor) -> Tokens:
        return self.forward(x).unsqueeze(1), None


@register_encoder("ft_transformer", modality="tabular")
class FTTransformer(Encoder):
    """Feature-tokenizer Transformer (Gorishniy et al. 2021): one token per column (a learned
    vector scaled by the number, a learned token where it is missing, or the category's
    embedding) plus a [CLS] token, through a Transformer encoder; pooled output is [CLS].

    Args:
        dim: token width (rounded up to a multiple of ``heads``).
        heads: attention heads.
        layers: Transformer layers.
        dropout: dropout in attention and feed-forward.
    """

    def __init__(self, info: ModalityInfo, *, dim: Size = 32, heads: Size = 4, layers: Size = 2,
                 dropout: Rate = 0.1) -> None:
        super().__init__()
        dim = heads * math.ceil(dim / heads)
        self.split = _Split(info)
        k, cards = self.split.k, self.split.cards
        bound = 1 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(k, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, dim).uniform_(-bound, bound))
        self.missing = nn.Parameter(torch.empty(k, dim).uniform_(-bound, bound))
        self.embed = nn.Embedding(max(1, sum(cards)), dim)
        self.register_buffer("offsets", torch.tensor([sum(cards[:j]) for j in range(len(cards))], dtype=torch.long),
                             persistent=False)
        self.cls = nn.Parameter(torch.empty(1, 1, dim).uniform_(-bound, bound))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def tokens(self, x: Tensor) -> Tokens:
        num, miss, cat = self.split(x)
        num_tok = num.unsqueeze(-1) * self.weight + self.bias  # [B, k, D]
        num_tok = torch.where(miss.unsqueeze(-1) > 0.5, self.missing.expand_as(num_tok), num_tok)
        cat_tok = self.embed(cat + self.offsets)  # [B, c, D]
        toks = torch.cat([self.cls.expand(x.shape[0], -1, -1), num_tok, cat_tok], dim=1)
        return self.norm(self.encoder(toks)), None

    def forward(self, x: Tensor) -> Tensor:
        return self.tokens(x)[0][:, 0]

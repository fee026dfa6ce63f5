"""Outer-product fusion: Tensor Fusion Network and its low-rank factorisation (LMF)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from autofusion.components import Size
from autofusion.errors import ConfigError
from autofusion.models.base import Fusion, register_fusion
from autofusion.models.fusion._common import projections, relative_weights
from autofusion.models.masking import zero_missing

_MAX_TFN_WEIGHTS = 50_000_000


def _with_one(x: Tensor) -> Tensor:
    """Appends a constant 1, so the outer product keeps every lower-order interaction."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=-1)


@register_fusion("tensor")
class TensorFusion(Fusion):
    """Tensor Fusion Network (Zadeh et al. 2017): outer product of ``[z_m, 1]`` over all
    modalities, flattened, then ``Linear+ReLU`` to ``out``.

    A missing modality contributes ``[0, ..., 0, 1]``: only the other modalities' terms
    remain. Size grows as ``(dim + 1) ** M``; keep ``dim`` small, and the inputs few.
    """

    max_inputs = 4  # (dim + 1) ** inputs weights: a space assembled from the data leaves it out above

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        weighting: str = "fixed",
        *,
        dim: Size = 16,
        out: Size = 64,
    ) -> None:
        super().__init__(in_dims, num_outputs, weighting)
        self.proj = projections(in_dims, dim)
        n = (dim + 1) ** len(in_dims)
        if n * out > _MAX_TFN_WEIGHTS:
            raise ConfigError(
                f"tensor fusion: (dim + 1) ** modalities * out must be <= {_MAX_TFN_WEIGHTS}, "
                f"but got ({dim} + 1) ** {len(in_dims)} * {out} = {n * out}; "
                "lower fusion dim/out or use low_rank_tensor"
            )
        self.post = nn.Sequential(nn.Linear(n, out), nn.ReLU())
        self.out_dim = out

    def forward(self, feats: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        x = self.open(feats, present)
        r = relative_weights(x.weights, x.present)
        fused: Tensor | None = None
        for i, (p, v) in enumerate(zip(self.proj, x.pooled)):
            z = _with_one(zero_missing(p(v), x.keep[:, i]) * r[:, i : i + 1])
            fused = z if fused is None else (fused.unsqueeze(-1) * z.unsqueeze(1)).flatten(1)
        assert fused is not None
        return self.post(fused)


@register_fusion("low_rank_tensor")
class LowRankTensorFusion(Fusion):
    """Low-rank Multimodal Fusion (Liu et al. 2018): the TFN weight tensor as a sum of
    ``rank`` products of per-modality factors, linear in the number of modalities.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        weighting: str = "fixed",
        *,
        rank: Size = 4,
        out: Size = 64,
    ) -> None:
        super().__init__(in_dims, num_outputs, weighting)
        # std 1/sqrt(d+1) keeps each factor's output near unit scale, so the product over
        # modalities neither vanishes nor explodes at init whatever their number.
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(rank, d + 1, out) / math.sqrt(d + 1))
            for d in in_dims.values()
        )
        self.rank_weights = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(out))
        self.out_dim = out

    def forward(self, feats: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        x = self.open(feats, present)
        r = relative_weights(x.weights, x.present)
        fused: Tensor | None = None
        for i, (factor, v) in enumerate(zip(self.factors, x.pooled)):
            f = torch.einsum("bd,rdo->bro", _with_one(v * r[:, i : i + 1]), factor)
            fused = f if fused is None else fused * f
        assert fused is not None
        return torch.einsum("r,bro->bo", self.rank_weights, fused) + self.bias

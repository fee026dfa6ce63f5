"""FiLM fusion (Perez et al. 2018): one modality's tokens modulated by the others."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from autofusion.components import NameOf, Size
from autofusion.errors import ConfigError
from autofusion.models.base import Fusion, Tokens, register_fusion
from autofusion.models.fusion._common import relative_weights
from autofusion.models.masking import masked_mean, zero_missing


@register_fusion("film")
class FiLMFusion(Fusion):
    """FiLM (Perez et al. 2018): ``relu((1 + gamma) * W x_t + beta)`` on the ``target``
    modality's tokens, with ``gamma, beta`` from the other modalities' pooled features.

    Output: the pooled modulated target and the conditioning vector, concatenated. A
    missing target gives zeros for its half; missing conditioners are left out of the mean.
    """

    uses_tokens = True
    min_inputs = 2  # one input modulated by the others

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        weighting: str = "fixed",
        *,
        dim: Size = 64,
        target: Annotated[str | None, NameOf("modality")] = None,
    ) -> None:
        super().__init__(in_dims, num_outputs, weighting)
        if target is None:
            target = self.modalities[0]
        if target not in in_dims:
            raise ConfigError(
                f"film fusion: target {target!r} is not a modality of this task; "
                f"known: {', '.join(self.modalities)}"
            )
        self.target = target
        self.t = self.modalities.index(target)
        self.others = [i for i in range(len(self.modalities)) if i != self.t]
        self.dim = dim
        dims = list(in_dims.values())
        self.target_proj = nn.Linear(dims[self.t], dim)
        self.cond_proj = nn.ModuleList(
            nn.Sequential(nn.Linear(dims[i], dim), nn.ReLU()) for i in self.others
        )
        self.film = nn.Linear(dim, 2 * dim)
        self.out_dim = 2 * dim

    def forward(self, feats: dict[str, Tokens], present: dict[str, Tensor]) -> Tensor:
        x = self.open(feats, present)
        toks, masks, pooled, keep, w = x.tokens, x.masks, x.pooled, x.keep, x.weights
        if self.others:
            c = torch.stack(
                [
                    zero_missing(p(pooled[i]), keep[:, i])
                    for p, i in zip(self.cond_proj, self.others)
                ],
                dim=1,
            )
            wo = w[:, self.others]
            # Weighted mean over the present conditioners; 0 when none is present.
            wo = wo / wo.sum(dim=1, keepdim=True).clamp_min(1e-12)
            cond = torch.einsum("bk,bkd->bd", wo, c)
        else:
            cond = toks[self.t].new_zeros(x.batch, self.dim)

        gamma, beta = self.film(cond).unsqueeze(1).chunk(2, dim=-1)
        h = torch.relu((1 + gamma) * self.target_proj(toks[self.t]) + beta)
        target = masked_mean(h, masks[self.t]) * relative_weights(w, x.present)[:, self.t : self.t + 1]
        return torch.cat([zero_missing(target, keep[:, self.t]), cond], dim=-1)

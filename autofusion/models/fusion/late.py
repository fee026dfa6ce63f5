"""Late (decision-level) fusion: one head per modality, logits combined by modality weights."""

from __future__ import annotations

from typing import Annotated

from torch import Tensor, nn

from autofusion.components import Ge, Rate
from autofusion.models.base import Fusion, register_fusion
from autofusion.models.fusion._common import weighted_sum


@register_fusion("late")
class LateFusion(Fusion):
    """Each modality predicts on its own; outputs are the weighted sum of the predictions.

    Robust to missing modalities by construction (their weight is 0). ``hidden=0`` makes
    each head a single Linear layer.
    """

    produces_outputs = True

    def __init__(
        self,
        in_dims: dict[str, int],
        num_outputs: int,
        weighting: str = "fixed",
        *,
        hidden: Annotated[int, Ge(0)] = 64,
        dropout: Rate = 0.0,
    ) -> None:
        super().__init__(in_dims, num_outputs, weighting)
        heads: list[nn.Module] = []
        for d in in_dims.values():
            if hidden > 0:
                heads.append(
                    nn.Sequential(
                        nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout),
                        nn.Linear(hidden, num_outputs),
                    )
                )
            else:
                heads.append(nn.Linear(d, num_outputs))
        self.heads = nn.ModuleList(heads)
        self.out_dim = num_outputs

    def forward(self, feats: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        x = self.open(feats, present)
        return weighted_sum([h(v) for h, v in zip(self.heads, x.pooled)], x.weights)

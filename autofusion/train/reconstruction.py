"""Cross-modal reconstruction (``train.reconstruct_weight``): the multimodal-autoencoder
idea (Ngiam et al. 2011) in embedding space. Each input's pooled encoder features are
predicted from the other inputs' (:class:`~autofusion.models.auxiliary.ReconstructionHeads`,
part of the model), so every encoder is pushed to carry what the other modalities can tell
about its sample.

The loss per input is ``1 - cosine similarity`` between the prediction and the input's own
features, on the rows that have the input and at least one other; the target is detached
(stop-gradient, as in SimSiam) so the encoders cannot make it trivially predictable by
collapsing it. The term is ``reconstruct_weight`` x the mean over inputs, logged per epoch
as ``train_reconstruct``. The unimodal auxiliary heads (``loss.aux_weight``) are separate
and unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from autofusion.models.auxiliary import ReconstructionHeads
from autofusion.models.build import ForwardOut, FusionModel
from autofusion.train.loop import TrainingHook


def reconstruction_loss(heads: ReconstructionHeads, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
    """Mean over inputs of ``1 - cos(predicted, actual)`` on the rows where it can be predicted."""
    first = next(iter(pooled.values()))
    ones = torch.ones(len(first), dtype=torch.bool, device=first.device)
    here = {n: present.get(n, ones).to(torch.bool) for n in pooled}
    pred = heads(pooled, here)
    losses = []
    for name, p in pred.items():
        others = torch.stack([here[o] for o in pooled if o != name], dim=1).any(dim=1)
        rows = here[name] & others
        if bool(rows.any()):
            target = pooled[name].detach().float()[rows]
            losses.append((1 - F.cosine_similarity(p[rows], target, dim=-1)).mean())
    return torch.stack(losses).mean() if losses else first.new_zeros((), dtype=torch.float32)


class ReconstructionHook(TrainingHook):
    """Adds ``weight`` x the reconstruction loss of the model's predictors (``train_reconstruct``).

    Args:
        weight: ``train.reconstruct_weight`` (> 0).
    """

    def __init__(self, weight: float) -> None:
        self.weight = float(weight)

    def loss_terms(self, model: FusionModel, fwd: ForwardOut, y: Tensor, present: dict[str, Tensor]
                   ) -> dict[str, Tensor]:
        if "reconstruct" not in model.train_heads:  # a model with one input has nothing to predict from
            return {}
        return {"reconstruct": self.weight * reconstruction_loss(model.train_heads["reconstruct"], fwd.pooled,
                                                                 present)}

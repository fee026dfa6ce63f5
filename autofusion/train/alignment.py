"""Alignment (``train.align_weight``): a CLIP-style contrastive loss that pulls the inputs'
embeddings of the same sample together in a shared space and pushes other samples' apart.

Each input's pooled encoder features go through its linear projection
(:class:`~autofusion.models.auxiliary.AlignmentHeads`, part of the model), are
L2-normalised, and every pair of inputs gets the symmetric InfoNCE loss of CLIP (Radford et
al. 2021) with a learnable temperature, over the rows of the batch that have both inputs.
The term is added to the loss as ``align_weight`` x the mean over pairs and logged per epoch
as ``train_align``.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor

from autofusion.models.auxiliary import AlignmentHeads
from autofusion.models.build import ForwardOut, FusionModel
from autofusion.train.loop import TrainingHook


def info_nce(a: Tensor, b: Tensor, scale: Tensor) -> Tensor:
    """Symmetric InfoNCE between row-aligned, L2-normalised embeddings ``a`` and ``b`` ``[N, D]``.

    Row ``i`` of ``a`` should match row ``i`` of ``b`` among all N rows of ``b``, and the other
    way round; ``scale`` is 1 / temperature. Chance level is ``log(N)``.
    """
    logits = scale * a @ b.T
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def alignment_loss(heads: AlignmentHeads, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
    """Mean InfoNCE over every pair of inputs, on the rows that have both (zero when none has two)."""
    z = heads(pooled)
    scale = heads.scale()
    first = next(iter(z.values()))
    losses = []
    for i, j in combinations(list(z), 2):
        both = _present(present, i, first) & _present(present, j, first)
        if int(both.sum()) >= 2:
            losses.append(info_nce(z[i][both], z[j][both], scale))
    return torch.stack(losses).mean() if losses else first.new_zeros(())


def _present(present: dict[str, Tensor], name: str, like: Tensor) -> Tensor:
    p = present.get(name)
    return torch.ones(len(like), dtype=torch.bool, device=like.device) if p is None else p.to(torch.bool)


class AlignmentHook(TrainingHook):
    """Adds ``weight`` x the alignment loss of the model's alignment heads (``train_align``).

    Args:
        weight: ``train.align_weight`` (> 0).
    """

    def __init__(self, weight: float) -> None:
        self.weight = float(weight)

    def loss_terms(self, model: FusionModel, fwd: ForwardOut, y: Tensor, present: dict[str, Tensor]
                   ) -> dict[str, Tensor]:
        heads = model.train_heads["align"] if "align" in model.train_heads else None
        if heads is None:  # a model with one input has nothing to align
            return {}
        return {"align": self.weight * alignment_loss(heads, fwd.pooled, present)}

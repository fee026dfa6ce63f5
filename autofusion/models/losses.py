"""Losses, registered by name. Each declares the target kinds it fits
(``classification``, ``multilabel``, ``regression``) so a mismatch is caught before a
trial starts."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autofusion.components import NonNegative, Rate, Registry
from autofusion.errors import ConfigError


class Loss(nn.Module):
    """Base class. ``class_counts`` (train split) is given for losses that weight classes."""

    targets: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, class_counts: list[int] | None = None) -> None:
        super().__init__()


LOSSES: Registry[type[Loss]] = Registry("loss")


@LOSSES.register("cross_entropy")
class CrossEntropy(Loss):
    """Plain cross-entropy."""

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), y)


@LOSSES.register("label_smoothing")
class LabelSmoothing(Loss):
    """Cross-entropy against targets smoothed towards uniform (Szegedy et al. 2016)."""

    def __init__(self, class_counts: list[int] | None = None, *, smoothing: Rate = 0.1) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"label_smoothing.smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), y, label_smoothing=self.smoothing)


@LOSSES.register("focal")
class Focal(Loss):
    """Focal loss (Lin et al. 2017): down-weights easy examples."""

    def __init__(self, class_counts: list[int] | None = None, *, gamma: NonNegative = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        logp = F.log_softmax(logits.float(), dim=-1).gather(1, y.unsqueeze(1)).squeeze(1)
        return (-((1 - logp.exp()).clamp(min=0) ** self.gamma) * logp).mean()


@LOSSES.register("weighted_cross_entropy")
class WeightedCrossEntropy(Loss):
    """Cross-entropy with classes weighted by inverse train frequency, for imbalance."""

    def __init__(self, class_counts: list[int] | None = None, *, power: float = 1.0) -> None:
        super().__init__()
        counts = torch.tensor(class_counts or [1], dtype=torch.float32).clamp(min=1)
        w = (counts.sum() / counts) ** power
        self.register_buffer("weight", w / w.mean())

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), y, weight=self.weight)


@LOSSES.register("bce")
class BCE(Loss):
    """Binary cross-entropy per label, for multi-label targets."""

    targets = ("multilabel",)

    def __init__(self, class_counts: list[int] | None = None, *, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        pw = torch.full((logits.shape[-1],), self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), y.float(), pos_weight=pw)


@LOSSES.register("mse")
class MSE(Loss):
    """Mean squared error, for numeric targets."""

    targets = ("regression",)

    def forward(self, pred: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(pred.float(), y.float())


@LOSSES.register("huber")
class Huber(Loss):
    """Huber loss, robust to outlying numeric targets."""

    targets = ("regression",)

    def __init__(self, class_counts: list[int] | None = None, *, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, pred: Tensor, y: Tensor) -> Tensor:
        return F.huber_loss(pred.float(), y.float(), delta=self.delta)


def losses_for(target: str) -> list[str]:
    """Registered losses that fit a target kind."""
    return [n for n in LOSSES.names() if target in LOSSES.get(n).targets]


def build_loss(name: str, params: dict, target: str, class_counts: list[int] | None) -> Loss:
    """Builds a loss, checking it fits the target kind."""
    cls = LOSSES.get(name)
    if target not in cls.targets:
        raise ConfigError(
            f"loss {name!r} does not fit {target} targets; use one of: {', '.join(losses_for(target))}"
        )
    return cls(class_counts, **params)

"""Contracts shared by every encoder and fusion operator.

An encoder maps one modality's batch to a pooled vector ``[B, out_dim]`` (``forward``) and
to a token sequence ``([B, T, out_dim], pad_mask [B, T] | None)`` (``tokens``) for fusion
operators that work on tokens (early, attention). A fusion operator maps a dict of encoder
outputs and a presence mask per modality to ``[B, out_dim]``; the classification head is
separate, except for decision-level (late) fusion, which produces the outputs itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from autofusion.components import Registry
from autofusion.errors import ConfigError
from autofusion.models.masking import (
    batch_info,
    masked_mean,
    pooled_inputs,
    presence,
    token_inputs,
)

Tokens = tuple[Tensor, "Tensor | None"]  # ([B, T, D], key padding mask [B, T] True=pad)


class Encoder(nn.Module):
    """Base class: subclasses set ``out_dim`` and implement ``tokens``.

    An encoder that reads its input its own way names a feature extractor
    (``autofusion.models.extractors``) in ``extractor`` and the parameters that shape its
    features in ``feature_params``; it then receives the extractor's arrays instead of the
    modality's.
    """

    modality: ClassVar[str] = ""
    extractor: ClassVar[type | None] = None
    feature_params: ClassVar[tuple[str, ...]] = ()
    out_dim: int

    def tokens(self, x: Tensor) -> Tokens:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return masked_mean(*self.tokens(x))


@dataclass(frozen=True)
class FusionInputs:
    """What every fusion operator's forward starts from (:meth:`Fusion.open`).

    Attributes:
        batch: the batch size.
        present: ``[B, M]`` floats, 1 where an input is present (in the operator's input order).
        keep: the same as bools.
        pooled: per input, its pooled features ``[B, D_m]``, zeroed where absent.
        weights: ``[B, M]`` the inputs' weights (``weighting``), summing to 1 over the present ones.
        tokens: per input, its tokens ``[B, T_m, D_m]`` zeroed where absent (token operators only).
        masks: per input, ``[B, T_m]``: True on padding and on every position of an absent input.
    """

    batch: int
    present: Tensor
    keep: Tensor
    pooled: list[Tensor]
    weights: Tensor
    tokens: list[Tensor] = field(default_factory=list)
    masks: list[Tensor] = field(default_factory=list)


class Fusion(nn.Module):
    """Base class for fusion operators: one class and one ``@register_fusion`` decorator each.

    What an operator is, it declares on its class: whether it reads token sequences
    (``uses_tokens``), whether it produces the outputs itself (``produces_outputs``: no head),
    and how many inputs it works on (``min_inputs``, ``max_inputs``; a space assembled from the
    data leaves out the operators its inputs do not fit).

    Args:
        in_dims: encoder ``out_dim`` per input, in a fixed input order.
        num_outputs: size of the model output (classes or regression targets); only
            decision-level fusion uses it.
        weighting: how inputs are weighted where the operator combines them (``fixed``,
            ``learned`` or ``gated``; the space's ``fusion.weights``).
    """

    uses_tokens: ClassVar[bool] = False
    produces_outputs: ClassVar[bool] = False
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    out_dim: int

    def __init__(self, in_dims: dict[str, int], num_outputs: int, weighting: str = "fixed") -> None:
        super().__init__()
        self.modalities = list(in_dims)
        self.in_dims = dict(in_dims)
        self.num_outputs = num_outputs
        self.weighting = ModalityWeights(in_dims, weighting)

    @classmethod
    def fits(cls, inputs: int) -> bool:
        """Whether the operator works on ``inputs`` inputs."""
        return inputs >= cls.min_inputs and (cls.max_inputs is None or inputs <= cls.max_inputs)

    def open(self, feats: dict[str, object], present: dict[str, Tensor]) -> FusionInputs:
        """The shared opening of every forward: presence, each input's features zeroed where
        absent (and its tokens and masks for a token operator), and the inputs' weights."""
        batch, device = batch_info(feats)
        pm, keep = presence(self.modalities, present, batch, device)
        if self.uses_tokens:
            toks, masks, pooled = token_inputs(feats, self.modalities, keep)
            return FusionInputs(batch, pm, keep, pooled, self.weighting(pooled, pm), toks, masks)
        pooled = pooled_inputs(feats, self.modalities, keep)
        return FusionInputs(batch, pm, keep, pooled, self.weighting(pooled, pm))

    def forward(self, feats: dict[str, object], present: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError  # pragma: no cover

    def input_weights(self) -> dict[str, float] | None:
        """Learned or average gate weights per input, for logging; None when fixed."""
        return self.weighting.summary(self.modalities)


class ModalityWeights(nn.Module):
    """Per-modality weights ``[B, M]`` that sum to 1 over the modalities present.

    ``fixed``: equal weights. ``learned``: a softmax over learned scalars.
    ``gated``: a per-sample softmax computed from the pooled features.
    """

    MODES = ("fixed", "learned", "gated")

    def __init__(self, in_dims: dict[str, int], mode: str = "fixed") -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ConfigError(f"unknown fusion weights {mode!r}; known: {', '.join(self.MODES)}")
        self.mode = mode
        m = len(in_dims)
        if mode == "learned":
            self.logits = nn.Parameter(torch.zeros(m))
        elif mode == "gated":
            self.gate = nn.Linear(sum(in_dims.values()), m)
        self._last_mean: Tensor | None = None

    def forward(self, pooled: list[Tensor], present: Tensor) -> Tensor:
        """Args: pooled features per modality; present ``[B, M]`` float (1 = present)."""
        b = present.shape[0]
        if self.mode == "fixed":
            logits = torch.zeros(b, present.shape[1], device=present.device)
        elif self.mode == "learned":
            logits = self.logits.unsqueeze(0).expand(b, -1)
        else:
            logits = self.gate(torch.cat(pooled, dim=-1))
        logits = logits.masked_fill(present <= 0, -1e4)
        w = torch.softmax(logits.float(), dim=-1).to(pooled[0].dtype)
        if self.mode == "gated":
            self._last_mean = w.detach().mean(dim=0)
        return w

    def summary(self, names: list[str]) -> dict[str, float] | None:
        if self.mode == "learned":
            vals = torch.softmax(self.logits.detach().float(), dim=0)
        elif self.mode == "gated" and self._last_mean is not None:
            vals = self._last_mean.float()
        else:
            return None
        return {n: round(float(v), 4) for n, v in zip(names, vals)}


class _EncoderRegistries(dict):
    """One encoder registry per modality, made on first use (a new modality needs no edit here)."""

    def __missing__(self, modality: str) -> Registry[type[Encoder]]:
        reg: Registry[type[Encoder]] = Registry(f"{modality} encoder")
        self[modality] = reg
        return reg


ENCODERS: dict[str, Registry[type[Encoder]]] = _EncoderRegistries()
FUSIONS: Registry[type[Fusion]] = Registry("fusion")


def register_encoder(name: str, modality: str):
    """Class decorator: registers an encoder under ``modality``/``name``."""

    def deco(cls: type[Encoder]) -> type[Encoder]:
        cls.modality = modality
        return ENCODERS[modality].register(name)(cls)

    return deco


def register_fusion(name: str):
    """Class decorator: registers a fusion operator under ``name``."""
    return FUSIONS.register(name)

"""``build_model(trial_config, meta) -> FusionModel``: encoders first, their ``out_dim``
next, then the fusion operator over ``in_dims`` and the head (AutoGluon's order)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autofusion.data.prepare import DataMeta
from autofusion.models import ENCODERS, FUSIONS
from autofusion.models.base import Encoder, Fusion
from autofusion.spaces.sample import TrialConfig


class InputAdapter(nn.Module):
    """Turns cached arrays into encoder inputs inside the model, so the logged model takes
    the same uint8 images/frames and token ids the cache holds."""

    def __init__(self, modality: str, prep: dict) -> None:
        super().__init__()
        self.modality = modality
        if modality in ("image", "video"):
            shape = (1, 3, 1, 1) if modality == "image" else (1, 1, 3, 1, 1)
            self.register_buffer("mean", torch.tensor(prep["mean"], dtype=torch.float32).view(shape) * 255.0)
            self.register_buffer("std", torch.tensor(prep["std"], dtype=torch.float32).view(shape) * 255.0)

    def forward(self, x: Tensor) -> Tensor:
        if self.modality in ("image", "video"):
            return (x.float() - self.mean) / self.std
        if self.modality == "text":
            return x.long()
        return x.float()


class FusionModel(nn.Module):
    """Encoders per modality, a fusion operator and a head.

    ``forward(inputs, present)`` returns logits (or regression outputs) ``[B, num_outputs]``.
    ``present`` holds a bool ``[B]`` per modality; a missing one counts as all present.
    """

    def __init__(
        self,
        adapters: dict[str, InputAdapter],
        encoders: dict[str, Encoder],
        fusion: Fusion,
        num_outputs: int,
        *,
        head_hidden: int,
        head_dropout: float,
        aux_weight: float = 0.0,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.modalities = list(encoders)
        self.adapters = nn.ModuleDict(adapters)
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = (
            nn.Identity()
            if fusion.produces_outputs
            else nn.Sequential(
                nn.Linear(fusion.out_dim, head_hidden), nn.ReLU(inplace=True),
                nn.Dropout(head_dropout), nn.Linear(head_hidden, num_outputs),
            )
        )
        self.aux_heads = nn.ModuleDict(
            {m: nn.Linear(e.out_dim, num_outputs) for m, e in encoders.items()} if aux_weight > 0 else {}
        )
        self.modality_dropout = modality_dropout

    def forward(self, inputs: dict[str, Tensor], present: dict[str, Tensor] | None = None) -> Tensor:
        return self.forward_with_aux(inputs, present)[0]

    def forward_with_aux(
        self, inputs: dict[str, Tensor], present: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Outputs and, when auxiliary unimodal heads exist, their outputs per modality."""
        b = next(iter(inputs.values())).shape[0]
        dev = next(iter(inputs.values())).device
        present = {m: (present or {}).get(m, torch.ones(b, dtype=torch.bool, device=dev)) for m in self.modalities}
        if self.training and self.modality_dropout > 0:
            present = _drop_modalities(present, self.modality_dropout)
        feats: dict[str, object] = {}
        pooled: dict[str, Tensor] = {}
        for m in self.modalities:
            x = self.adapters[m](inputs[m])
            enc = self.encoders[m]
            if self.fusion.uses_tokens:
                toks, pad = enc.tokens(x)
                feats[m] = (toks, pad)
                if self.aux_heads:
                    pooled[m] = _masked_mean(toks, pad)
            else:
                feats[m] = pooled[m] = enc(x)
        out = self.head(self.fusion(feats, present))
        aux = {m: h(pooled[m]) for m, h in self.aux_heads.items()}
        return out, aux


def _masked_mean(toks: Tensor, pad: Tensor | None) -> Tensor:
    if pad is None:
        return toks.mean(dim=1)
    keep = (~pad).unsqueeze(-1).to(toks.dtype)
    return (toks * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def _drop_modalities(present: dict[str, Tensor], p: float) -> dict[str, Tensor]:
    """Drops each present modality with probability ``p``, keeping at least one per sample."""
    names = list(present)
    stacked = torch.stack([present[m] for m in names], dim=1)
    drop = torch.rand(stacked.shape, device=stacked.device) < p
    kept = stacked & ~drop
    empty = ~kept.any(dim=1)
    if empty.any():
        # Give back one originally-present modality, chosen at random, to emptied rows.
        scores = torch.rand(stacked.shape, device=stacked.device) * stacked
        restore = torch.zeros_like(kept).scatter_(1, scores.argmax(dim=1, keepdim=True), True)
        kept = torch.where(empty.unsqueeze(1), restore & stacked, kept)
    return {m: kept[:, i] for i, m in enumerate(names)}


def build_model(tc: TrialConfig, meta: DataMeta) -> FusionModel:
    """Builds the trial's model for the data described by ``meta``."""
    adapters = {m: InputAdapter(m, meta.prep[m]) for m in meta.modalities}
    encoders = {m: ENCODERS[m].get(tc.encoders[m].name)(meta.infos[m], **tc.encoders[m].params) for m in meta.modalities}
    in_dims = {m: e.out_dim for m, e in encoders.items()}
    fusion = FUSIONS.get(tc.fusion.name)(in_dims, meta.num_outputs, tc.fusion_weights, **tc.fusion.params)
    return FusionModel(
        adapters, encoders, fusion, meta.num_outputs, head_hidden=tc.head_hidden, head_dropout=tc.head_dropout,
        aux_weight=tc.aux_weight, modality_dropout=tc.modality_dropout,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

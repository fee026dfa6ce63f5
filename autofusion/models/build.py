"""``build_model(trial_config, meta) -> FusionModel``: encoders first, their ``out_dim``
next, then the fusion operator over ``in_dims`` and the head (AutoGluon's order).

A model has one input per manifest column of a modality (``meta.inputs``); inputs of one
modality share that modality's encoder, unless the space says ``share_weights: false`` for
it (then each input has its own, of the same architecture). Each input reads either the modality's arrays
(through the modality's adapter: normalisation, dtype) or, for an encoder with a feature
extractor, that extractor's arrays (``feature_keys``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from autofusion.components import NameOf
from autofusion.data.rows import InputSpec, trial_inputs
from autofusion.modalities import MODALITIES, ModalityInfo
from autofusion.models import ENCODERS, FUSIONS
from autofusion.models.auxiliary import train_heads
from autofusion.models.base import Encoder, Fusion
from autofusion.models.encoders.pair import EncoderPair, pair_key
from autofusion.models.extractors import (
    feature_key,
    frozen_key,
    input_key,
    pretrained_layout,
)
from autofusion.models.masking import masked_mean
from autofusion.models.missing import missing_embeddings
from autofusion.trial import Choice, TrialConfig


@dataclass
class ForwardOut:
    """What one forward pass gives training: the outputs, the unimodal auxiliary heads'
    outputs per input (when ``aux_weight`` > 0), and each input's pooled encoder features
    (for alignment and reconstruction losses)."""

    out: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)
    pooled: dict[str, Tensor] = field(default_factory=dict)


class FusionModel(nn.Module):
    """Encoders per modality, a fusion operator over the inputs, and a head.

    ``forward(inputs, present)`` returns logits (or regression outputs) ``[B, num_outputs]``;
    ``inputs`` and ``present`` are keyed by input name; a missing ``present`` entry counts
    as all present.
    """

    def __init__(
        self,
        inputs: dict[str, str],
        adapters: dict[str, nn.Module],
        encoders: dict[str, Encoder],
        fusion: Fusion,
        num_outputs: int,
        *,
        feature_keys: dict[str, str | None] | None = None,
        head_hidden: int,
        head_dropout: float,
        aux_weight: float = 0.0,
        modality_dropout: float = 0.0,
        target_scale: dict | None = None,
        encoder_of: dict[str, str] | None = None,
        missing: nn.Module | None = None,
        train_heads: dict[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.inputs = dict(inputs)  # input name -> modality
        self.encoder_of = {i: (encoder_of or {}).get(i, m) for i, m in self.inputs.items()}  # input -> encoder key
        self.modalities = list(self.inputs)  # what fusion sees: one entry per input
        self.feature_keys = dict(feature_keys or {})
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
            {i: nn.Linear(encoders[self.encoder_of[i]].out_dim, num_outputs) for i in self.inputs}
            if aux_weight > 0 else {}
        )
        self.modality_dropout = modality_dropout
        self.missing = missing  # learned stand-ins for absent inputs (models/missing.py); None: fusion masks them
        self.train_heads = nn.ModuleDict(train_heads or {})  # alignment / reconstruction heads (models/auxiliary.py)
        self.scale: nn.Module = TargetScale(target_scale) if target_scale else nn.Identity()

    def forward(self, inputs: dict[str, Any], present: dict[str, Tensor] | None = None) -> Tensor:
        return self.forward_with_aux(inputs, present).out

    def encoder_input(self, name: str, x: Any) -> Any:
        """The modality's adapter on its own arrays; extractor arrays go to the encoder as they are."""
        if self.feature_keys.get(name) is None:
            return self.adapters[self.inputs[name]](x)
        return x

    def forward_with_aux(self, inputs: dict[str, Any], present: dict[str, Tensor] | None = None) -> ForwardOut:
        """Outputs, the auxiliary unimodal heads' outputs per input, and pooled features per input."""
        first = next(iter(inputs.values()))
        first = next(iter(first.values())) if isinstance(first, dict) else first
        b, dev = first.shape[0], first.device
        present = {i: (present or {}).get(i, torch.ones(b, dtype=torch.bool, device=dev)) for i in self.inputs}
        if self.training and self.modality_dropout > 0:
            present = _drop_modalities(present, self.modality_dropout)
        feats: dict[str, object] = {}
        pooled: dict[str, Tensor] = {}
        for name, modality in self.inputs.items():
            x = self.encoder_input(name, inputs[name])
            enc = self.encoders[self.encoder_of[name]]
            if self.fusion.uses_tokens:
                toks, pad = enc.tokens(x)
                feats[name] = (toks, pad)
                pooled[name] = masked_mean(toks, pad)
            else:
                feats[name] = pooled[name] = enc(x)
        if self.missing is not None:  # absent inputs become learned vectors, and fusion sees every input
            feats, present = self.missing(feats, present)
        out = self.scale(self.head(self.fusion(feats, present)))
        aux = {i: self.scale(h(pooled[i])) for i, h in self.aux_heads.items()}
        return ForwardOut(out, aux, pooled)


class TargetScale(nn.Module):
    """Regression outputs on the targets' own scale: the head predicts standardised targets,
    mapped back here with the training targets' mean and standard deviation
    (``autofusion.data.labels.target_scale``)."""

    def __init__(self, scale: dict) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(scale["mean"])), persistent=False)
        self.register_buffer("std", torch.tensor(float(scale["std"])), persistent=False)

    def forward(self, z: Tensor) -> Tensor:
        return z.float() * self.std + self.mean


def _drop_modalities(present: dict[str, Tensor], p: float) -> dict[str, Tensor]:
    """Drops each present input with probability ``p``, keeping at least one per sample."""
    names = list(present)
    stacked = torch.stack([present[m] for m in names], dim=1)
    drop = torch.rand(stacked.shape, device=stacked.device) < p
    kept = stacked & ~drop
    empty = ~kept.any(dim=1)
    if empty.any():
        # Give back one originally-present input, chosen at random, to emptied rows.
        scores = torch.rand(stacked.shape, device=stacked.device) * stacked
        restore = torch.zeros_like(kept).scatter_(1, scores.argmax(dim=1, keepdim=True), True)
        kept = torch.where(empty.unsqueeze(1), restore & stacked, kept)
    return {m: kept[:, i] for i, m in enumerate(names)}


def encoder_info(meta: Any, modality: str, key: str | None) -> ModalityInfo:
    """The ModalityInfo an encoder builds from: the modality's, plus its extractor's facts."""
    info = meta.infos[modality]
    if key is None:
        return info
    return replace(info, extra={**info.extra, **meta.feature_infos.get(key, {})})


def used_inputs(tc: TrialConfig, meta: Any) -> list[InputSpec]:
    """The inputs the trial's model reads: a modality's joined text when the trial picked that
    layout (``encoder.<m>.layout: joined``), else its one-per-column inputs."""
    return trial_inputs(meta.input_specs, getattr(tc, "joined_inputs", ()))


def feature_keys(tc: TrialConfig, meta: Any, layout: str = "trained") -> dict[str, str | None]:
    """Per input, the key of the extractor arrays it reads (None: the modality's arrays). A
    pretrained encoder reads its cached frozen outputs or its model inputs, by the trial's
    ``train.strategy`` and ``layout`` (see ``models.extractors.pretrained_layout``)."""
    return {spec.name: choice_key(spec.modality, tc.encoders[spec.modality], tc.strategy, layout)
            for spec in used_inputs(tc, meta)}


def choice_key(modality: str, choice: Choice, strategy: str, layout: str) -> str | None:
    """The key of the arrays an encoder choice reads (a pair: its halves' keys joined)."""
    keys = []
    for part in choice.parts():
        cls = ENCODERS[modality].get(part.name)
        key = feature_key(part.name, cls, part.params)
        if key is not None and getattr(cls, "pretrained", False) and pretrained_layout(strategy, layout)[1]:
            key = frozen_key(key)
        keys.append(key)
    return keys[0] if len(keys) == 1 else pair_key(keys)


def make_encoder(modality: str, choice: Choice, meta: Any, strategy: str, layout: str, pretrained: bool) -> Encoder:
    """The encoder of a choice (two side by side for a pair), built from the facts of the arrays it reads."""
    if len(choice.parts()) > 1:
        return EncoderPair([make_encoder(modality, c, meta, strategy, layout, pretrained) for c in choice.parts()])
    cls = ENCODERS[modality].get(choice.name)
    key = choice_key(modality, choice, strategy, layout)
    info = encoder_info(meta, modality, input_key(key) if key else None)
    if getattr(cls, "pretrained", False):
        backbone = pretrained_layout(strategy, layout)[0]
        info = replace(info, extra={**info.extra, "backbone": backbone, "load_weights": pretrained})
    return cls(info, **choice.params)


def build_model(tc: TrialConfig, meta: Any, *, layout: str = "trained", pretrained: bool = True) -> FusionModel:
    """Builds the trial's model for the data described by ``meta`` (a ``DataMeta``).

    Args:
        layout: for pretrained encoders: ``start`` (as a trial starts training), ``trained``
            (as its trained weights are evaluated: frozen encoders are light modules over their
            cached outputs), ``whole`` (every backbone over its model inputs: the logged model).
        pretrained: False builds backbones from their saved configs only, without loading
            their weights (a whole state dict is loaded next: serving).
    """
    keys = feature_keys(tc, meta, layout)
    inputs = {s.name: s.modality for s in used_inputs(tc, meta)}
    separate = set(getattr(tc, "separate_encoders", ()))
    encoder_of = {i: (f"{m}:{i}" if m in separate else m) for i, m in inputs.items()}
    encoders: dict[str, Encoder] = {}
    for i, m in inputs.items():
        if encoder_of[i] not in encoders:
            encoders[encoder_of[i]] = make_encoder(m, tc.encoders[m], meta, tc.strategy, layout, pretrained)
    adapters = {m: MODALITIES.get(m).adapter(meta.prep[m]) for m in meta.modalities}
    in_dims = {i: encoders[encoder_of[i]].out_dim for i in inputs}
    fusion = FUSIONS.get(tc.fusion.name)(in_dims, meta.num_outputs, tc.fusion_weighting,
                                         **_inputs_named(tc.fusion.name, tc.fusion.params, inputs))
    strategies = {"missing": missing_embeddings(tc.missing, in_dims),  # train.missing, train.*_weight
                  "train_heads": train_heads(in_dims, tc.align_weight, tc.reconstruct_weight)}
    return FusionModel(
        inputs, adapters, encoders, fusion, meta.num_outputs, feature_keys=keys, head_hidden=tc.head_hidden,
        head_dropout=tc.head_dropout, aux_weight=tc.aux_weight, modality_dropout=tc.modality_dropout,
        target_scale=getattr(meta, "target_scale", None), encoder_of=encoder_of, **strategies,
    )


def whole_model(model: FusionModel, tc: TrialConfig, meta: Any) -> FusionModel:
    """``model`` with every pretrained backbone in it, reading model inputs: what is logged and
    served. A frozen encoder's backbone comes with its pretrained weights; everything trained
    comes from ``model``."""
    if model.feature_keys == feature_keys(tc, meta, "whole"):
        return model  # no light encoder in it: it is whole already
    whole = build_model(tc, meta, layout="whole")
    missing, unexpected = whole.load_state_dict(model.state_dict(), strict=False)
    lost = [k for k in missing if ".backbone." not in k] + list(unexpected)
    if lost:
        raise RuntimeError(f"the whole model does not take the trained weights: {', '.join(lost[:5])}")
    return whole.train(model.training)


def _inputs_named(fusion: str, params: dict, inputs: dict[str, str]) -> dict:
    """A fusion parameter that names a modality (``film: {target: image}``) names that
    modality's first input when it has several columns (``frontal``)."""
    out = dict(params)
    for name, spec in FUSIONS.param_specs(fusion).items():
        if any(isinstance(m, NameOf) and m.what == "modality" for m in spec.metadata()):
            value = out.get(name)
            if value is not None and value not in inputs:
                out[name] = next((i for i, m in inputs.items() if m == value), value)
    return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

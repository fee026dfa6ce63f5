"""Pretrained backbones in the spaces a user gets.

:func:`offer` adds to a space, for each of its modalities, the recommended backbone
(``autofusion.models.backbones``) whose weights are here (the weights shelf or the libraries'
caches), else what the shelf holds for that modality: an encoder choice beside the classical
and from-scratch ones, frozen (its outputs computed once per dataset and cached), and that
encoder together with the modality's classical one (``tfidf+hf_text``: both read the column)
as another. On a GPU the search also chooses how they train (``train.strategy``). The built-in
spaces' loading and the space assembled from ``--data`` call it; a space file of your own gets
exactly what it names.

:func:`summary` gives the lines a search prints before its trials: the pretrained encoders it
uses, and the recommended ones that are not here with the one command that fetches them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from autofusion.errors import ConfigError
from autofusion.models.backbones import (
    CLASSICAL,
    DEVICES,
    Backbone,
    choice_params,
    device,
    recommended,
    uses_of,
)
from autofusion.trial import PAIR

# What a GPU makes affordable: the search picks, per trial, how pretrained encoders train.
GPU_STRATEGY = {"type": "categorical", "choices": ["frozen", "staged", "finetune"]}


@dataclass(frozen=True)
class Offer:
    """Weights that are here for one use (a modality, or ``image+text``), as an encoder choice."""

    use: str
    encoder: str
    weights: str
    choice: dict[str, Any]
    where: str


def found_where(name: str) -> str | None:
    """Where the weights named ``name`` (as ``weights pull`` names them) are here; None: nowhere."""
    from autofusion.models import weights

    if not weights.maybe_here(name):  # without importing timm or torchvision
        return None
    try:
        return weights.origin(weights.locate(name))
    except ConfigError:
        return None


def offers(modalities: list[str], dev: str) -> tuple[list[Offer], list[Backbone]]:
    """Per use of ``modalities``: the weights to offer (the device's recommended backbone, else
    the other device's, else the newest shelf entry an encoder of that family reads), and the
    device's recommended backbones that are not here."""
    from autofusion.home import shelf_entries

    out: list[Offer] = []
    missing: list[Backbone] = []
    other = next(d for d in DEVICES if d != dev)
    shelf = sorted(shelf_entries().items(), key=lambda kv: str(kv[1].get("added", "")), reverse=True)
    for use in uses_of(modalities):
        best = recommended(dev, (use,))[0]
        for b in (best, *recommended(other, (use,))):
            where = found_where(b.weights)
            if where is not None:
                out.append(Offer(use, b.encoder, b.weights, b.choice(), where))
                break
        else:
            mine = [n for n, e in shelf if e.get("use") == use and e.get("encoder") == best.encoder]
            if mine:
                out.append(Offer(use, best.encoder, mine[0], choice_params(best.encoder, mine[0]), "the shelf"))
        if not out or out[-1].use != use or out[-1].weights != best.weights:
            missing.append(best)
    return out, missing


def offer(raw: dict[str, Any]) -> dict[str, Any]:
    """The space mapping ``raw`` with the pretrained choices found here added (see the module's
    docstring); ``raw`` itself unchanged, and returned as it is when nothing is here."""
    modalities = list(raw.get("modalities") or {})
    dev = device()
    found, _ = offers(modalities, dev)
    if not found:
        return raw
    out = copy.deepcopy(raw)
    cached = False
    for o in found:
        for m in o.use.split("+"):
            choices = _choices(out, m)
            if choices is None or o.encoder in choices:  # the space names its own
                continue
            choices[o.encoder] = dict(o.choice)
            cached |= _frozen_capable(m, o.encoder)
            classical = CLASSICAL.get(m)
            if o.use == m and classical in choices:
                choices[f"{classical}{PAIR}{o.encoder}"] = {}
    if dev == "gpu" and cached and (out.get("train") or {}).get("strategy") is None:
        out["train"] = {**(out.get("train") or {}), "strategy": dict(GPU_STRATEGY)}
    return out


def _choices(space: dict[str, Any], modality: str) -> dict[str, Any] | None:
    """The modality's encoder choices as a mapping (a bare list of names becomes one)."""
    section = (space.get("encoders") or {}).get(modality)
    if not isinstance(section, dict):
        return None
    if isinstance(section.get("choices"), list):
        section["choices"] = {str(c): {} for c in section["choices"]}
    return section["choices"] if isinstance(section.get("choices"), dict) else None


def is_pretrained(modality: str, name: str, params: dict[str, Any]) -> bool:
    """Whether an encoder choice starts from pretrained weights: a pretrained family (``hf_text``,
    ``timm``, ...) or a torchvision encoder with ``pretrained: true``."""
    from autofusion.models import ENCODERS

    return bool(getattr(ENCODERS[modality].get(name), "pretrained", False)) or params.get("pretrained") is True


def _frozen_capable(modality: str, encoder: str) -> bool:
    """Whether the encoder's outputs can be cached and the encoder frozen (not torchvision's)."""
    from autofusion.models import ENCODERS

    return encoder in ENCODERS[modality] and bool(getattr(ENCODERS[modality].get(encoder), "pretrained", False))


def summary(space: Any) -> list[str]:
    """The lines a search prints about pretrained encoders before its trials: those the space
    uses (and where their weights are), and the device's recommended ones that are not here,
    with the one command that fetches them."""
    dev = device()
    used = []
    for m in space.modalities:
        mine = [name if PAIR in name else f"{name} {_weights_named(name, params)}"
                for name, params in space.file.encoders[m].choices.items()
                if PAIR in name or is_pretrained(m, name, params)]
        if mine:
            used.append(f"{m}: {', '.join(mine)}")
    lines = []
    if used:
        strategy = space.file.train.strategy
        how = ("frozen: their outputs are computed once per dataset and cached" if strategy is None
               else f"train.strategy: {', '.join(map(str, getattr(strategy, 'choices', None) or [strategy]))}")
        lines.append(f"pretrained encoders ({dev}): {'; '.join(used)}; {how}")
    _, missing = offers(space.modalities, dev)
    if missing:
        names = " ".join(dict.fromkeys(b.weights for b in missing))
        lines.append(f"recommended pretrained encoders not found here ({dev}): "
                     f"{', '.join(f'{b.use} {b.weights}' for b in missing)}; the search goes on without them. "
                     f"Fetch them where a network exists with: autofusion weights pull {names} "
                     "(or register a copy: autofusion weights add NAME PATH)")
    return lines


def _weights_named(encoder: str, params: dict[str, Any]) -> str:
    """The weights an encoder choice names and where they are (``efficientnet_lite0 (the shelf)``)."""
    model = params.get("model")
    if encoder == "timm" and params.get("checkpoint"):
        return f"{model} (checkpoint {params['checkpoint']})"
    name = f"timm:{model}" if encoder == "timm" else str(model) if model is not None else f"torchvision:{encoder}"
    return f"{model if model is not None else 'pretrained'} ({found_where(name) or 'not found'})"

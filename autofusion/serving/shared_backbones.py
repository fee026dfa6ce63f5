"""Pretrained backbones in the served model: each computed once per request, in batches.

A logged model is whole: a pretrained encoder holds its backbone and reads model inputs
(token ids, pixels). The backbone is most of a request's cost, and the members of an ensemble
found by one search often hold the same frozen one (MiniLM, EfficientNet) with the same
preprocessing. So:

* loading an ensemble keeps one copy of each backbone its members have in common
  (:func:`share_backbones`: same encoder class, same feature parameters, equal weights; a
  fine-tuned backbone differs in its weights and keeps its own copy);
* a request runs each backbone once on its rows, in batches of :data:`BACKBONE_BATCH`, and
  keeps the outputs in the request's cache under the backbone's identity, the input and its
  feature key (:func:`with_backbone_outputs`): every member holding that backbone reads them,
  and the importance passes reuse them. A pretrained encoder takes its outputs in place of its
  model inputs, as it takes cached frozen outputs in training
  (``models.encoders._pretrained.PretrainedEncoder``), so the predictions do not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from autofusion.models.encoders._embed import batches
from autofusion.models.encoders._pretrained import PretrainedEncoder
from autofusion.models.encoders.pair import half_input, half_key, halves, with_half
from autofusion.serving.perturb import num_rows

BACKBONE_BATCH = 64  # rows per backbone forward pass: bounds a large request's activations


def pretrained_encoders(model: nn.Module) -> dict[str, PretrainedEncoder]:
    """The model's pretrained encoders that hold a backbone, by encoder key (a pretrained half of
    a pair, ``tfidf+hf_text``, by the key and the half's prefix: ``text/1/``)."""
    return {f"{k}/{prefix}" if prefix else k: e for k, enc in model.encoders.items() for prefix, e in halves(enc)
            if isinstance(e, PretrainedEncoder) and e.backbone is not None}


def _feature_key(model: nn.Module, encoder: str) -> str | None:
    """The feature key of the inputs an encoder reads (its class and feature parameters)."""
    base, _, prefix = encoder.partition("/")
    return half_key(next((model.feature_keys.get(i) for i, e in model.encoder_of.items() if e == base), None), prefix)


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def share_backbones(models: Iterable[nn.Module]) -> int:
    """Makes ``models`` hold one copy of each backbone they have in common (same encoder class,
    same feature key, equal weights); returns how many copies were dropped."""
    kept: dict[tuple[str, str | None], list[nn.Module]] = {}
    dropped = 0
    for model in models:
        for key, enc in pretrained_encoders(model).items():
            group = kept.setdefault((type(enc).__name__, _feature_key(model, key)), [])
            same = next((b for b in group if b is enc.backbone or _equal(b, enc.backbone)), None)
            if same is None:
                group.append(enc.backbone)
            elif same is not enc.backbone:
                enc.backbone = same
                dropped += 1
    return dropped


def with_backbone_outputs(model: nn.Module, inputs: dict[str, Any], cache: dict[Any, Any] | None,
                          fresh: frozenset[str] = frozenset(),
                          pass_cache: dict[Any, Any] | None = None) -> dict[str, Any]:
    """``inputs`` with each pretrained encoder's model inputs replaced by its backbone's outputs,
    from ``cache`` when a member (or an earlier pass) computed them; inputs in ``fresh`` (read
    anew from an importance pass's changed cells) from ``pass_cache``, the pass's own, which the
    other members of an ensemble read within the same pass."""
    out = dict(inputs)
    for name, encoder in model.encoder_of.items():
        for prefix, enc in halves(model.encoders[encoder]):  # a pair's pretrained half too
            if not (isinstance(enc, PretrainedEncoder) and enc.backbone is not None):
                continue
            key = ("backbone", id(enc.backbone), name, half_key(model.feature_keys.get(name), prefix))
            store = pass_cache if name in fresh else cache
            if store is not None and key in store:
                got = store[key]
            else:
                got = backbone_outputs(enc, half_input(inputs[name], prefix))
                if store is not None:
                    store[key] = got
            out[name] = with_half(out[name], prefix, got)
    return out


@torch.no_grad()
def backbone_outputs(enc: PretrainedEncoder, x: Any, batch: int | None = None) -> dict[str, torch.Tensor]:
    """The encoder's outputs (pooled vectors, capped tokens, pad mask) for every row of model
    inputs ``x``, ``batch`` rows (:data:`BACKBONE_BATCH`) per forward pass (texts longest first,
    as the feature cache computes them: ``models.encoders._embed.batches``)."""
    parts: dict[str, list[torch.Tensor]] = {}
    done: list[np.ndarray] = []
    for sel, part in batches(x, num_rows(x), batch or BACKBONE_BATCH):
        for k, v in enc.outputs(part).items():
            parts.setdefault(k, []).append(v)
        done.append(sel)
    back = torch.from_numpy(np.argsort(np.concatenate(done))) if done else torch.arange(0)
    return {k: torch.cat(v)[back] for k, v in parts.items()}


# --- one file per distinct backbone in a saved ensemble ------------------------------------

SHARED_WEIGHTS = "shared_weights.json"  # a member's module path -> the backbone file it reads


class BackboneFiles:
    """The backbones an ensemble's neural members hold, saved once each in ``folder``
    (``<n>.pt``): the frozen backbone of a search's members (or of a bagged model's folds) is
    the same pretrained weights in every one of them, 87 MB for MiniLM-L6."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.saved: list[tuple[str, dict[str, torch.Tensor]]] = []

    def put(self, state: dict[str, torch.Tensor]) -> str:
        """The file holding ``state`` (written now unless an equal one was)."""
        for name, kept in self.saved:
            if kept.keys() == state.keys() and all(kept[k].shape == v.shape and torch.equal(kept[k], v)
                                                   for k, v in state.items()):
                return name
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{len(self.saved)}.pt"
        torch.save(state, self.folder / name)
        self.saved.append((name, state))
        return name


def split_backbones(model: nn.Module, state: dict[str, torch.Tensor],
                    files: BackboneFiles) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``state`` (the model's) without its pretrained backbones' weights, each put in ``files``;
    and the module path of each backbone -> its file name."""
    paths = {id(m): name for name, m in model.named_modules()}
    rest, where = dict(state), {}
    for enc in pretrained_encoders(model).values():
        path = paths[id(enc.backbone)]
        if path in where:  # one backbone module held by two encoders: taken out once
            continue
        part = {k[len(path) + 1:]: rest.pop(k) for k in list(rest) if k.startswith(path + ".")}
        where[path] = files.put(part)
    return rest, where


def joined_backbones(state: dict[str, torch.Tensor], where: dict[str, str], folder: Path) -> dict[str, torch.Tensor]:
    """``state`` with the backbones :func:`split_backbones` took out read back from ``folder``."""
    out = dict(state)
    for path, name in where.items():
        part = torch.load(folder / name, map_location="cpu", weights_only=True)
        out.update({f"{path}.{k}": v for k, v in part.items()})
    return out

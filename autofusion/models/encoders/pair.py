"""Two encoders on one input: the encoder choice ``tfidf+hf_text`` feeds a text column to TF-IDF
and to MiniLM at once, ``pixels+timm`` an image to the pixel statistics and to EfficientNet.
Classical and pretrained encoders win on different data; together the search can find
"both" where each alone is weaker.

Each half is the space's own choice of that name (its parameters, its feature extractor, its
cached frozen outputs): a pair adds no arrays, it reads its halves' side by side under one
feature key (``<key>+<key>``, ``@frozen`` at the end when a pretrained half reads its cached
outputs), so batches, staged training and serving see one input as for any encoder. Its
pooled vector is the halves' vectors side by side; its tokens are the halves' token sequences
one after the other, each in its own block of channels (zeros in the other's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autofusion.components import Registry
from autofusion.models.base import Encoder, Tokens
from autofusion.models.extractors import (
    FROZEN,
    FeatureExtractor,
    feature_key,
    frozen_key,
    input_key,
    load_extractor,
)
from autofusion.trial import PAIR


def pair_problem(name: str, params: dict, choices: dict, registry: Registry) -> str | None:
    """Why the space's pair choice ``name`` cannot work (None when it can)."""
    halves = name.split(PAIR)
    if len(halves) != 2 or len(set(halves)) != 2:
        return f"a pair names two different encoders joined by '+' (tfidf+hf_text), but got {name!r}"
    for half in halves:
        if half not in choices:
            return (f"{half!r} is not a choice of this section; a pair's halves take their parameters from their "
                    f"own choices, so add {half}: {{...}} beside it")
        if half not in registry:
            return f"unknown encoder {half!r}; known: {', '.join(registry.names())}"
        if registry.get(half).extractor is None:
            return (f"{half!r} reads the modality's own arrays; each half of a pair needs a feature extractor "
                    "(tfidf, pixels, mfcc_stats or a pretrained encoder)")
    if params:
        return f"a pair takes no parameters of its own (each half's are in its own choice), but got {', '.join(params)}"
    return None


def pair_key(keys: list[str]) -> str:
    """A pair's feature key from its halves' keys: the model-input keys joined, ``@frozen`` at
    the end when a half reads cached frozen outputs (so ``input_key`` gives the pair's whole layout)."""
    base = PAIR.join(input_key(k) for k in keys)
    return frozen_key(base) if any(k.endswith(FROZEN) for k in keys) else base


def side_by_side(arrays: list[dict[str, Any]]) -> dict[str, Any]:
    """The halves' arrays under ``0/<name>`` and ``1/<name>`` (the same arrays, not copies)."""
    return {f"{i}/{k}": v for i, a in enumerate(arrays) for k, v in a.items()}


class PairExtractor(FeatureExtractor):
    """The arrays of a pair's two fitted extractors, side by side (see :func:`side_by_side`);
    saved as the two extractors in folders ``0`` and ``1``."""

    def __init__(self, modality: str, prep: dict, params: dict, parts: list[FeatureExtractor] | None = None) -> None:
        super().__init__(modality, prep, params)
        self.parts = list(parts or [])

    def transform(self, cells: Any) -> dict[str, Any]:
        return side_by_side([p.transform(cells) for p in self.parts])

    def save_state(self, folder: Path) -> None:
        for i, p in enumerate(self.parts):
            p.save(folder / str(i))

    def load_state(self, folder: Path) -> None:
        self.parts = [load_extractor(folder / str(i)) for i in range(2)]

    def identity(self) -> dict:
        return {"pair": [p.identity() for p in self.parts]}


class EncoderPair(Encoder):
    """Two encoders over one input (built by ``build_model`` from a pair choice).

    Args:
        parts: the two encoders, in the pair's order; each reads its own arrays (``0/...``, ``1/...``).
    """

    def __init__(self, parts: list[Encoder]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.dims = [int(p.out_dim) for p in parts]
        self.out_dim = sum(self.dims)

    def split(self, x: dict[str, Any]) -> list[Any]:
        """Each half's input: its single array ``x`` as a tensor, several as a dict."""
        return [half_input(x, f"{i}/") for i in range(len(self.parts))]

    def forward(self, x: dict[str, Any]) -> Tensor:
        return torch.cat([p(xi).float() for p, xi in zip(self.parts, self.split(x))], dim=-1)

    def tokens(self, x: dict[str, Any]) -> Tokens:
        seqs, pads, start = [], [], 0
        for p, xi, d in zip(self.parts, self.split(x), self.dims):
            toks, pad = p.tokens(xi)
            seqs.append(F.pad(toks.float(), (start, self.out_dim - start - d)))  # its own block of channels
            pads.append(pad)
            start += d
        if all(p is None for p in pads):
            return torch.cat(seqs, dim=1), None
        pads = [torch.zeros(s.shape[:2], dtype=torch.bool, device=s.device) if p is None else p.bool()
                for s, p in zip(seqs, pads)]
        return torch.cat(seqs, dim=1), torch.cat(pads, dim=1)


def halves(enc: nn.Module) -> list[tuple[str, nn.Module]]:
    """An encoder's parts with the prefix of the arrays each reads: ``[("", enc)]``, or a
    pair's ``[("0/", tfidf), ("1/", hf_text)]`` (serving runs a pretrained half's backbone
    once per request, as it does a pretrained encoder's)."""
    return [(f"{i}/", p) for i, p in enumerate(enc.parts)] if isinstance(enc, EncoderPair) else [("", enc)]


def half_input(x: Any, prefix: str) -> Any:
    """The arrays of the half ``prefix`` reads (all of ``x`` for no prefix): one ``x`` as itself."""
    if not prefix:
        return x
    sub = {k[len(prefix):]: v for k, v in x.items() if k.startswith(prefix)}
    return sub["x"] if list(sub) == ["x"] else sub


def with_half(x: Any, prefix: str, arrays: dict[str, Any]) -> Any:
    """``x`` with the half ``prefix``'s arrays replaced by ``arrays`` (``x`` is ``arrays`` for no prefix)."""
    if not prefix:
        return arrays
    return {**{k: v for k, v in x.items() if not k.startswith(prefix)}, **{prefix + k: v for k, v in arrays.items()}}


def half_key(key: str | None, prefix: str) -> str | None:
    """The feature key of the half ``prefix`` of a pair's key (the key itself for no prefix)."""
    if not prefix or key is None:
        return key
    frozen = key.endswith(FROZEN)
    part = input_key(key).split(PAIR)[int(prefix.rstrip("/"))]
    return frozen_key(part) if frozen else part


def add_pairs(data: Any, space: Any) -> None:
    """Registers every pair choice of ``space`` with the prepared ``data``: for the halves'
    model-input keys and (where a pretrained half has them) their frozen-output keys, one
    :class:`PairExtractor` and, for each input that has both halves' arrays, their arrays side
    by side. The halves were built as choices of their own before."""
    from autofusion.models import ENCODERS

    names = {k.split("|", 1)[0] for k in data.features}
    for m in data.meta.modalities:
        section = space.file.encoders[m].choices
        for name in (n for n in section if PAIR in n):
            keys = [feature_key(h, ENCODERS[m].get(h), section[h]) for h in name.split(PAIR)]
            frozen = [frozen_key(k) if frozen_key(k) in data.extractors else k for k in keys]
            for variant in (keys, frozen):
                key = pair_key(variant)
                if key in data.extractors or not all(k in data.extractors for k in variant):
                    continue
                data.extractors[key] = PairExtractor(m, data.meta.prep[m], {"parts": variant},
                                                     parts=[data.extractors[k] for k in variant])
                for n in names:
                    if all(f"{n}|{k}" in data.features for k in variant):
                        data.features[f"{n}|{key}"] = side_by_side([data.features[f"{n}|{k}"] for k in variant])

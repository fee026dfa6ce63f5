"""Feature extractors: how an encoder that reads its input its own way (TF-IDF, a pretrained
tokenizer, a frozen backbone's outputs) turns an input's raw cells into arrays.

An encoder class names its extractor (``extractor = TfidfExtractor``) and which of its
parameters shape the features (``feature_params = ("ngrams", ...)``; a space must give those
one value: they are computed once, before the trials). The extractor is fitted on the
training rows only, its arrays are computed for every row once per search and shared by
all trials, and the fitted extractor is saved inside the logged model, so serving
transforms raw inputs exactly as training did. Encoders without an extractor read the
modality's own arrays (``autofusion.modalities``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from autofusion.modalities import ModalityInfo

EXTRACTORS: dict[str, type["FeatureExtractor"]] = {}  # by class name, for loading a saved extractor


class FeatureExtractor:
    """Base class.

    Args:
        modality: the modality of the inputs it reads.
        prep: that modality's completed preprocessing settings.
        params: the encoder's feature parameters (all of ``feature_params``, defaults filled).
    """

    #: names of the arrays ``transform`` returns; ``("x",)`` gives the encoder one tensor.
    outputs: ClassVar[tuple[str, ...]] = ("x",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        EXTRACTORS[cls.__name__] = cls

    def __init__(self, modality: str, prep: dict, params: dict) -> None:
        self.modality = modality
        self.prep = dict(prep)
        self.params = dict(params)

    def fit(self, cells: pd.Series) -> None:
        """Learns from the training rows' raw cells (present ones only)."""

    def transform(self, cells: pd.Series) -> dict[str, Any]:
        """Raw cells (text, resolved file paths or file bytes; '' or None where missing) ->
        arrays with one row per cell (numpy, or scipy sparse matrices)."""
        raise NotImplementedError  # pragma: no cover

    def info(self, base: ModalityInfo) -> dict:
        """Shape facts the encoder needs, added to its ModalityInfo's ``extra`` (JSON-serialisable)."""
        return {}

    def save(self, folder: Path) -> None:
        """Writes the fitted extractor as plain JSON and arrays (no pickle), for :meth:`load`."""
        folder.mkdir(parents=True, exist_ok=True)
        header = {"class": type(self).__name__, "modality": self.modality, "prep": self.prep, "params": self.params}
        (folder / "extractor.json").write_text(json.dumps(header, default=str))
        self.save_state(folder)

    @classmethod
    def load(cls, folder: Path) -> "FeatureExtractor":
        """The fitted extractor :meth:`save` wrote, ready to transform."""
        header = json.loads((folder / "extractor.json").read_text())
        obj = cls(header["modality"], header["prep"], header["params"])
        obj.load_state(folder)
        return obj

    def save_state(self, folder: Path) -> None:
        """Writes what was fitted (nothing by default)."""

    def load_state(self, folder: Path) -> None:
        """Reads what :meth:`save_state` wrote."""

    def identity(self) -> dict:
        """What makes two extractors produce the same arrays (for keys and caches)."""
        return {"class": type(self).__name__, "modality": self.modality, "params": self.params}


# A pretrained encoder's arrays come in two kinds: its model inputs (token ids, pixels at its
# size; key ``<encoder>-<hash>``) and its frozen outputs computed once (``<key>@frozen``).
FROZEN = "@frozen"


def frozen_key(key: str) -> str:
    """The key of a pretrained encoder's cached frozen outputs, from its model-input key."""
    return key + FROZEN


def input_key(key: str) -> str:
    """The model-input key of a (possibly frozen-output) key."""
    return key[: -len(FROZEN)] if key.endswith(FROZEN) else key


def pretrained_layout(strategy: str, layout: str) -> tuple[bool, bool]:
    """(built with its backbone, reads the cached frozen outputs) for a pretrained encoder.

    Args:
        strategy: the trial's ``train.strategy`` (``frozen``, ``staged``, ``finetune``).
        layout: ``start`` (as a trial starts training), ``trained`` (as its trained weights are
            evaluated), ``whole`` (every backbone over model inputs: the logged, served model).
    """
    if layout == "whole" or strategy == "finetune":
        return True, False
    if strategy == "staged":  # fusion + head on cached outputs first, the backbone unfrozen later
        return True, layout == "start"
    return False, True  # frozen: a light module over cached outputs, no backbone weights loaded


def load_extractor(folder: Path) -> FeatureExtractor:
    """A fitted extractor from the folder :meth:`FeatureExtractor.save` wrote."""
    name = json.loads((folder / "extractor.json").read_text())["class"]
    if name not in EXTRACTORS:
        raise ValueError(f"{folder}: unknown feature extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}")
    return EXTRACTORS[name].load(folder)


def feature_key(encoder_name: str, encoder_cls: type, params: dict) -> str | None:
    """The key of the arrays an encoder choice reads (None: the modality's own arrays).

    ``params`` are the trial's parameters of that choice; the key depends only on the
    feature parameters, so trials that differ elsewhere share one set of arrays.
    """
    if getattr(encoder_cls, "extractor", None) is None:
        return None
    fp = feature_params(encoder_cls, params)
    blob = json.dumps(fp, sort_keys=True, default=str)
    return f"{encoder_name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def feature_params(encoder_cls: type, params: dict) -> dict:
    """The encoder's feature parameters, with its declared defaults where ``params`` lacks one."""
    import inspect

    sig = inspect.signature(encoder_cls)
    out = {}
    for name in getattr(encoder_cls, "feature_params", ()):
        default = sig.parameters[name].default if name in sig.parameters else None
        out[name] = params.get(name, None if default is inspect.Parameter.empty else default)
    return out


def rows(arrays: dict[str, Any], sel: np.ndarray) -> dict[str, np.ndarray]:
    """The rows ``sel`` of every array, dense (sparse matrices densified per batch)."""
    out = {}
    for name, a in arrays.items():
        part = a[sel]
        out[name] = part.toarray() if hasattr(part, "toarray") else np.ascontiguousarray(part)
    return out

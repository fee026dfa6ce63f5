"""What the classical encoders share. A classical encoder (``tfidf`` in ``text.py``, ``pixels``
in ``image.py``, ``mfcc_stats`` in ``audio.py``) is searched like every other encoder and is often
the strongest on small real data sets: a feature extractor fitted on the training split only (a
vocabulary, or the features' means and standard deviations), computed once per search and saved
inside the logged model as JSON and arrays (no pickle), so serving reads raw files as training
did, into a small network. Here: the base of the fixed-length numeric features
(:class:`Standardised`) and the small MLP they feed (:class:`FeatureMLP`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor, nn

from autofusion.modalities import ModalityInfo
from autofusion.models.base import Encoder, Tokens
from autofusion.models.extractors import FeatureExtractor


class Standardised(FeatureExtractor):
    """Base of the fixed-length numeric features: ``features`` (one row per cell, computed
    from the decoded file) standardised with the training rows' mean and standard deviation."""

    def features(self, cells: list[Any]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, cells: pd.Series) -> None:
        self.fit_features(self.features(list(cells)))

    def transform(self, cells: pd.Series) -> dict[str, Any]:
        return {"x": self.standardise(self.features(list(cells)))}

    def fit_features(self, x: np.ndarray) -> None:
        """The mean and standard deviation of the training rows' ``features``."""
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        std = x.std(axis=0) if len(x) > 1 else np.ones(x.shape[1])
        self.std = np.where(std > 1e-8, std, 1.0)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """``features`` rows standardised as fitted, clipped, float32."""
        return np.clip((np.asarray(x) - self.mean) / self.std, -CLIP, CLIP).astype(np.float32)

    #: bumped when ``features`` computes something else: the feature cache's entries then miss
    features_version: int = 1

    def features_identity(self) -> dict:
        """What makes two extractors compute the same ``features`` per cell (the feature cache's key)."""
        return {**self.identity(), "prep": self.prep, "version": self.features_version}

    def save_state(self, folder: Path) -> None:
        np.save(folder / "mean.npy", self.mean)
        np.save(folder / "std.npy", self.std)

    def load_state(self, folder: Path) -> None:
        self.mean, self.std = np.load(folder / "mean.npy"), np.load(folder / "std.npy")

    def info(self, base: ModalityInfo) -> dict:
        return {"features": int(len(self.mean))}


CLIP = 10.0  # standardised features are clipped to [-CLIP, CLIP] (an outlier at predict time)


def present_or_none(cells: list[Any]) -> list[Any]:
    """Cells with empty strings (a missing file) as None, which decodes to an empty array."""
    return [None if isinstance(c, str) and not c.strip() else c for c in cells]


class FeatureMLP(Encoder):
    """A standardised feature vector -> dropout -> linear -> ReLU (the classical encoders' small network)."""

    def __init__(self, info: ModalityInfo, dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(int(info.extra["features"]), dim), nn.ReLU())
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.float())

    def tokens(self, x: Tensor) -> Tokens:
        return self.forward(x).unsqueeze(1), None

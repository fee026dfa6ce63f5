"""Classical features, searched like every other encoder and often the strongest on small
real data sets: TF-IDF word and character n-grams of text into a linear projection (the
bag-of-words model a practitioner writes first); downsampled pixels with colour and edge
histograms of images, and MFCC statistics of audio clips, each into a small MLP. Each is a
feature extractor fitted on the training split only (a vocabulary, or the features' means and
standard deviations), computed once per search, and saved inside the logged model as JSON and
arrays (no pickle), so serving reads raw files as training did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from torch import Tensor, nn

from autofusion.components import Ge, Le, Rate, Size
from autofusion.modalities import ModalityInfo
from autofusion.models.base import Encoder, Tokens, register_encoder
from autofusion.models.features import FeatureExtractor


class TfidfExtractor(FeatureExtractor):
    """scikit-learn TF-IDF (sublinear term frequency, L2-normalised rows) of word 1..n-grams
    and, unless ``char_ngrams`` is 0, of character 2..n-grams within word boundaries."""

    def fit(self, cells: pd.Series) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [str(t) for t in cells]
        self.vectorizers = [TfidfVectorizer(**kw) for kw in self._settings()]
        for v in self.vectorizers:
            try:
                v.fit(texts)
            except ValueError:  # an empty vocabulary (no text, or min_df too high): keep one dummy feature
                v.set_params(min_df=1, token_pattern=r"(?u)\b\w+\b")
                v.fit([*texts, "empty"])

    def _settings(self) -> list[dict[str, Any]]:
        """The TfidfVectorizer arguments of the word (and character) vectorizer."""
        p = self.params
        common = {"sublinear_tf": True, "min_df": p["min_df"], "max_features": p["max_features"],
                  "strip_accents": "unicode", "dtype": np.float32}
        out = [{"ngram_range": (1, p["word_ngrams"]), **common}]
        if p["char_ngrams"] >= 2:
            out.append({"analyzer": "char_wb", "ngram_range": (2, p["char_ngrams"]), **common})
        return out

    def save_state(self, folder: Path) -> None:
        for i, v in enumerate(self.vectorizers):
            (folder / f"vocabulary-{i}.json").write_text(json.dumps({k: int(j) for k, j in v.vocabulary_.items()}))
            np.save(folder / f"idf-{i}.npy", v.idf_)

    def load_state(self, folder: Path) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizers = []
        for i, kw in enumerate(self._settings()):
            v = TfidfVectorizer(**kw)
            v.vocabulary_ = json.loads((folder / f"vocabulary-{i}.json").read_text())
            v.idf_ = np.load(folder / f"idf-{i}.npy")
            self.vectorizers.append(v)

    def transform(self, cells: pd.Series) -> dict[str, Any]:
        import scipy.sparse as sp

        texts = ["" if t is None else str(t) for t in cells]
        return {"x": sp.hstack([v.transform(texts) for v in self.vectorizers], format="csr", dtype=np.float32)}

    def info(self, base: ModalityInfo) -> dict:
        return {"features": int(sum(len(v.vocabulary_) for v in self.vectorizers))}


@register_encoder("tfidf", modality="text")
class Tfidf(Encoder):
    """TF-IDF of word and character n-grams (fitted on the training split) into a linear projection.

    Args:
        word_ngrams: word n-grams from 1 to this.
        char_ngrams: character n-grams from 2 to this; 0 leaves them out.
        max_features: the most frequent n-grams kept, per kind.
        min_df: n-grams seen in fewer training texts are dropped.
        dim: width of the projection.
        dropout: dropout on the TF-IDF features while training.
    """

    extractor: ClassVar[type[FeatureExtractor]] = TfidfExtractor
    feature_params: ClassVar[tuple[str, ...]] = ("word_ngrams", "char_ngrams", "max_features", "min_df")

    def __init__(
        self, info: ModalityInfo, *, word_ngrams: Annotated[int, Ge(1), Le(3)] = 2,
        char_ngrams: Annotated[int, Ge(0), Le(6)] = 5, max_features: Annotated[int, Ge(10)] = 20000,
        min_df: Size = 1, dim: Size = 128, dropout: Rate = 0.2,
    ) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(int(info.extra["features"]), dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.drop(x.float()))

    def tokens(self, x: Tensor) -> Tokens:
        return self.forward(x).unsqueeze(1), None


class Standardised(FeatureExtractor):
    """Base of the fixed-length numeric features: ``features`` (one row per cell, computed
    from the decoded file) standardised with the training rows' mean and standard deviation."""

    def features(self, cells: list[Any]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, cells: pd.Series) -> None:
        x = self.features(list(cells)).astype(np.float64)
        self.mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        std = x.std(axis=0) if len(x) > 1 else np.ones(x.shape[1])
        self.std = np.where(std > 1e-8, std, 1.0)

    def transform(self, cells: pd.Series) -> dict[str, Any]:
        x = (self.features(list(cells)) - self.mean) / self.std
        return {"x": np.clip(x, -CLIP, CLIP).astype(np.float32)}

    def save_state(self, folder: Path) -> None:
        np.save(folder / "mean.npy", self.mean)
        np.save(folder / "std.npy", self.std)

    def load_state(self, folder: Path) -> None:
        self.mean, self.std = np.load(folder / "mean.npy"), np.load(folder / "std.npy")

    def info(self, base: ModalityInfo) -> dict:
        return {"features": int(len(self.mean))}


CLIP = 10.0  # standardised features are clipped to [-CLIP, CLIP] (an outlier at predict time)


class PixelStatsExtractor(Standardised):
    """Per image: its pixels at ``size`` x ``size`` (RGB), hue/saturation/value histograms of
    ``bins`` bins each, and histograms of edge orientation (8 directions, magnitude-weighted)
    over a 2 x 2 grid, from the image decoded once at 64 px."""

    def features(self, cells: list[Any]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from autofusion.models.encoders.pretrained import decode_cells

        size, bins = int(self.params["size"]), int(self.params["bins"])
        empty = np.zeros((3, WORK_SIDE, WORK_SIDE), dtype=np.uint8)
        images = decode_cells(present_or_none(cells), lambda c: decode_small(c, WORK_SIDE), empty)
        images = images.astype(np.float32) / 255.0
        n = len(images)
        pixels = F.adaptive_avg_pool2d(torch.from_numpy(images), size).numpy().reshape(n, -1)
        return np.concatenate([pixels, hsv_histograms(images, bins), edge_histograms(images.mean(axis=1))], axis=1)


WORK_SIDE = 64  # images are decoded once at this side; pixel features are averaged down from it


def present_or_none(cells: list[Any]) -> list[Any]:
    """Cells with empty strings (a missing file) as None, which decodes to an empty array."""
    return [None if isinstance(c, str) and not c.strip() else c for c in cells]


def decode_small(source: Any, side: int) -> np.ndarray:
    """An image decoded straight to ``side`` x ``side`` RGB uint8 ``[3, side, side]``; a JPEG is
    decoded at a reduced scale first (Pillow's draft mode), which is several times faster."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    from autofusion.modalities import DecodeError
    from autofusion.modalities.base import open_source

    try:
        with PILImage.open(open_source(source)) as im:
            im.draft("RGB", (side * 2, side * 2))
            arr = np.asarray(im.convert("RGB").resize((side, side), PILImage.Resampling.BILINEAR, reducing_gap=2.0))
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a readable image ({type(exc).__name__})") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def hsv_histograms(images: np.ndarray, bins: int) -> np.ndarray:
    """Per image ``[N, 3, H, W]`` (RGB in 0..1): normalised histograms of hue, saturation and value."""
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    v = images.max(axis=1)
    c = v - images.min(axis=1)
    s = np.where(v > 0, c / np.maximum(v, 1e-8), 0.0)
    safe = np.maximum(c, 1e-8)
    h = np.where(v == r, (g - b) / safe % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6.0
    h = np.where(c > 1e-8, h, 0.0)
    out = []
    for channel in (h, s, v):
        idx = np.clip((channel * bins).astype(np.int64), 0, bins - 1).reshape(len(images), -1)
        counts = np.stack([np.bincount(row, minlength=bins) for row in idx]) if len(idx) else np.zeros((0, bins))
        out.append(counts / max(idx.shape[1], 1))
    return np.concatenate(out, axis=1)


def edge_histograms(grey: np.ndarray, grid: int = 2, directions: int = 8) -> np.ndarray:
    """Per grey image ``[N, H, W]``: magnitude-weighted histograms of gradient direction in
    each cell of a ``grid`` x ``grid`` layout (a coarse HOG), normalised per image."""
    n, hgt, wid = grey.shape
    gy, gx = np.gradient(grey, axis=(1, 2))
    mag = np.hypot(gx, gy)
    ang = ((np.arctan2(gy, gx) + np.pi) / (2 * np.pi) * directions).astype(np.int64) % directions
    cells = []
    for i in range(grid):
        for j in range(grid):
            rows_, cols_ = slice(i * hgt // grid, (i + 1) * hgt // grid), slice(j * wid // grid, (j + 1) * wid // grid)
            sl = (slice(None), rows_, cols_)
            a, m = ang[sl].reshape(n, -1), mag[sl].reshape(n, -1)
            cells.append(np.stack([np.bincount(a[k], weights=m[k], minlength=directions) for k in range(n)])
                         if n else np.zeros((0, directions)))
    out = np.concatenate(cells, axis=1)
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-8)


class MfccStatsExtractor(Standardised):
    """Per clip: mean and standard deviation over time of ``n_mfcc`` MFCCs, their deltas and
    delta-deltas (torchaudio; 25 ms windows, 10 ms hop), over the clip's own frames (not the
    zero padding that brings it to the modality's length)."""

    def features(self, cells: list[Any]) -> np.ndarray:
        import torch
        import torchaudio

        from autofusion.modalities.audio import decode_audio, num_samples
        from autofusion.models.encoders.pretrained import decode_cells

        rate, length, n_mfcc = int(self.prep["sample_rate"]), num_samples(self.prep), int(self.params["n_mfcc"])
        hop, n_fft = max(1, rate // 100), 1 << max(6, int(np.ceil(np.log2(rate * 0.025))))
        mfcc = torchaudio.transforms.MFCC(sample_rate=rate, n_mfcc=n_mfcc, log_mels=True, melkwargs={
            "n_fft": n_fft, "hop_length": hop, "n_mels": max(n_mfcc, min(40, n_fft // 4))})
        empty = np.zeros(length, dtype=np.float32)
        waves = decode_cells(present_or_none(cells), lambda c: decode_audio(c, rate, length), empty)
        out = []
        with torch.no_grad():
            for start in range(0, len(waves), 256):
                batch = torch.from_numpy(np.ascontiguousarray(waves[start:start + 256]))
                out.append(_clip_stats(mfcc(batch), batch, hop))
        return np.concatenate(out) if out else np.zeros((0, 6 * n_mfcc))


def _clip_stats(m: Any, waves: Any, hop: int) -> np.ndarray:
    """Mean and std over each clip's frames of MFCCs ``m`` ``[B, C, T]``, deltas and delta-deltas."""
    import torchaudio.functional as AF

    d1 = AF.compute_deltas(m)
    d2 = AF.compute_deltas(d1)
    nonzero = waves.abs() > 0
    last = (nonzero.shape[1] - nonzero.flip(1).int().argmax(dim=1)).where(nonzero.any(dim=1), 0)
    frames = (last // hop + 1).clamp(1, m.shape[-1])
    keep = (np.arange(m.shape[-1])[None, :] < frames.numpy()[:, None]).astype(np.float32)[:, None, :]
    count = keep.sum(axis=2)
    stats = []
    for x in (m.numpy(), d1.numpy(), d2.numpy()):
        mean = (x * keep).sum(axis=2) / count
        var = (((x - mean[:, :, None]) ** 2) * keep).sum(axis=2) / count
        stats += [mean, np.sqrt(var)]
    return np.concatenate(stats, axis=1)


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


@register_encoder("pixels", modality="image")
class Pixels(FeatureMLP):
    """Downsampled pixels, colour histograms and coarse edge-orientation histograms
    (standardised on the training split) into a small MLP: a strong start on small data sets
    of photos, where a CNN trained from scratch has too few images to learn from.

    Args:
        size: side of the downsampled RGB pixels (3 * size * size features).
        bins: bins of each of the hue, saturation and value histograms.
        dim: width of the hidden layer (the encoder's output).
        dropout: dropout on the features while training.
    """

    extractor: ClassVar[type[FeatureExtractor]] = PixelStatsExtractor
    feature_params: ClassVar[tuple[str, ...]] = ("size", "bins")

    def __init__(self, info: ModalityInfo, *, size: Annotated[int, Ge(4), Le(32)] = 16,
                 bins: Annotated[int, Ge(2), Le(64)] = 16, dim: Size = 128, dropout: Rate = 0.2) -> None:
        super().__init__(info, dim, dropout)


@register_encoder("mfcc_stats", modality="audio")
class MfccStats(FeatureMLP):
    """Per-clip means and standard deviations of MFCCs, deltas and delta-deltas (standardised
    on the training split) into a small MLP: the classical audio baseline.

    Args:
        n_mfcc: MFCC coefficients (6 * n_mfcc features).
        dim: width of the hidden layer (the encoder's output).
        dropout: dropout on the features while training.
    """

    extractor: ClassVar[type[FeatureExtractor]] = MfccStatsExtractor
    feature_params: ClassVar[tuple[str, ...]] = ("n_mfcc",)

    def __init__(self, info: ModalityInfo, *, n_mfcc: Annotated[int, Ge(8), Le(64)] = 20, dim: Size = 128,
                 dropout: Rate = 0.2) -> None:
        super().__init__(info, dim, dropout)

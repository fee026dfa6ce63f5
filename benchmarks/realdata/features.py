"""The scikit-learn references' features: one ``Block`` per modality (grey pixels, TF-IDF
n-grams, MFCC statistics, video frame statistics, tabular fields), each fitted on the train
rows only, and the row scaling that makes blocks weigh alike in early fusion."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .datasets import MODALITIES, TABULAR, Dataset, absolute, label_str, missing

Make = Callable[[np.ndarray], Any]   # train rows -> feature matrix of all rows (fitted on train)


@dataclass
class Block:
    """One modality's features for every row, and the seconds it took to extract them."""

    name: str
    make: Make
    seconds: float


def _present(p: Any) -> bool:
    """A file cell that names a file."""
    return not missing(p) and bool(str(p).strip())


def image_pixels(paths: list[Any], size: int = 32) -> np.ndarray:
    """Grey ``size`` x ``size`` pixels in [0, 1]; zeros for a missing or unreadable file."""
    from PIL import Image

    out = np.zeros((len(paths), size * size), dtype=np.float32)
    for i, p in enumerate(paths):
        if not _present(p):
            continue
        try:
            with Image.open(p) as im:
                out[i] = np.asarray(im.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32).ravel() / 255
        except OSError:
            pass
    return out


def audio_mfcc(paths: list[Any], n_mfcc: int = 20) -> np.ndarray:
    """Mean and standard deviation over time of ``n_mfcc`` MFCCs (mono, the file's rate)."""
    import soundfile as sf
    import torch
    import torchaudio

    transforms: dict[int, Any] = {}
    out = np.zeros((len(paths), 2 * n_mfcc), dtype=np.float32)
    for i, p in enumerate(paths):
        if not _present(p):
            continue
        try:
            wave, sr = sf.read(str(p), dtype="float32", always_2d=True)
        except (RuntimeError, OSError):
            continue
        if sr not in transforms:
            transforms[sr] = torchaudio.transforms.MFCC(sample_rate=sr, n_mfcc=n_mfcc,
                                                        melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40})
        with torch.no_grad():
            m = transforms[sr](torch.from_numpy(wave.mean(axis=1))).numpy()
        out[i] = np.concatenate([m.mean(axis=1), m.std(axis=1)])
    return out


def video_frames(paths: list[Any], size: int = 16, frames: int = 8) -> np.ndarray:
    """Mean and standard deviation of up to ``frames`` evenly spaced grey ``size`` x ``size`` frames."""
    import av

    out = np.zeros((len(paths), 2 * size * size), dtype=np.float32)
    for i, p in enumerate(paths):
        if not _present(p):
            continue
        try:
            with av.open(str(p)) as container:
                decoded = [f.to_image() for f in container.decode(video=0)]
        except (OSError, ValueError, av.error.FFmpegError):
            continue
        if not decoded:
            continue
        pick = [decoded[int(j)] for j in np.linspace(0, len(decoded) - 1, min(frames, len(decoded)))]
        arr = np.stack([np.asarray(f.convert("L").resize((size, size)), dtype=np.float32).ravel() / 255 for f in pick])
        out[i] = np.concatenate([arr.mean(axis=0), arr.std(axis=0)])
    return out


def mean_over_columns(ds: Dataset, role: str, extract: Callable[[list[Any]], np.ndarray]) -> np.ndarray:
    """One feature vector per row: ``extract`` on each of the role's columns, averaged."""
    mats = [extract([absolute(ds.base, v) for v in ds.df[c]]) for c in ds.roles[role]]
    return np.mean(mats, axis=0)


def standardised(x: np.ndarray) -> Make:
    """Dense features standardised with the train rows' mean and deviation."""
    from sklearn.preprocessing import StandardScaler

    return lambda train: StandardScaler().fit(x[train]).transform(x)


def text_tfidf(texts: list[str]) -> Make:
    """TF-IDF of word (1-2)-grams and char (2-5)-grams, fitted on the train rows."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

    def make(train: np.ndarray) -> Any:
        word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
        fit = [texts[i] for i in train]
        word.fit(fit)
        char.fit(fit)
        return sparse.hstack([word.transform(texts), char.transform(texts)]).tocsr()

    return make


def tabular(ds: Dataset) -> Make:
    """Numbers (logged where skewed, median-imputed, standardised) and one-hot categories."""
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num_cols, cat_cols = ds.roles.get("numeric", []), ds.roles.get("categorical", [])
    num = np.column_stack([_numeric(ds.df[c], c in ds.log_columns) for c in num_cols]) if num_cols else None
    cat = np.column_stack([[label_str(v) if not missing(v) else "" for v in ds.df[c]] for c in cat_cols]) \
        if cat_cols else None

    def make(train: np.ndarray) -> np.ndarray:
        parts = []
        if num is not None:
            med = np.nanmedian(num[train], axis=0)
            filled = np.where(np.isnan(num), med, num)
            parts.append(StandardScaler().fit(filled[train]).transform(filled))
        if cat is not None:
            enc = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(cat[train])
            parts.append(enc.transform(cat))
        return np.hstack(parts)

    return make


def _numeric(col: pd.Series, log: bool) -> np.ndarray:
    """A numeric column as floats (NaN where unreadable), logged if asked."""
    v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    return np.log(v) if log else v


def _joined_text(ds: Dataset) -> list[str]:
    """Each row's text columns joined by spaces (empty cells as nothing)."""
    return [" ".join("" if missing(v) else str(v) for v in row)
            for row in ds.df[ds.roles["text"]].itertuples(index=False)]


def build_blocks(ds: Dataset) -> list[Block]:
    """Every modality's features (pixels, TF-IDF, MFCC, frames, tabular), timed."""
    blocks = []
    extractors: dict[str, Callable[[], Make]] = {
        "text": lambda: text_tfidf(_joined_text(ds)),
        "image": lambda: standardised(mean_over_columns(ds, "image", image_pixels)),
        "audio": lambda: standardised(mean_over_columns(ds, "audio", audio_mfcc)),
        "video": lambda: standardised(mean_over_columns(ds, "video", video_frames)),
    }
    for role in MODALITIES:
        if role in ds.roles:
            t0 = time.perf_counter()
            make = extractors[role]()
            blocks.append(Block(role, make, time.perf_counter() - t0))
    if any(r in ds.roles for r in TABULAR):
        t0 = time.perf_counter()
        blocks.append(Block("tabular", tabular(ds), time.perf_counter() - t0))
    return blocks


def unit_rows(x: Any) -> Any:
    """A block scaled so that its rows' mean L2 norm is 1 (so blocks weigh alike in early fusion)."""
    from scipy import sparse

    if sparse.issparse(x):
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
    else:
        norms = np.linalg.norm(x, axis=1)
    scale = float(norms.mean()) or 1.0
    return x / scale

"""Real data: does autofusion's default search beat ten-line scikit-learn models?

On the real data sets in ``../shared/data/`` (memes: image + text, offensive or not; houses:
four photos + tabular fields, price regression) and on any manifest given with ``--data``,
every method reads the same train/val/test split and is scored on the same test rows by the
same metric function, from its test predictions:

- scikit-learn references, fitted on train (C / alpha picked on val from a small grid):
  classification: class-balanced logistic regression on TF-IDF word (1-2)- and char
  (2-5)-grams of text, on grey 32x32 pixels of images, on MFCC mean/std of audio, on grey
  16x16 frame mean/std of video, on tabular fields; early fusion (one model on every block,
  each scaled to unit row norm) and late fusion (mean of the per-modality probabilities);
  majority class. Regression: ridge on the (log) target from tabular fields (numbers
  standardised, skewed ones logged, categories one-hot), from pixels (mean over the image
  columns), early and late fusion; the train mean.
- the fixed hand-built neural model: ``autofusion search ... --num-trials 1`` (a search's
  first trial is the model you would write by hand: concat + MLP, AdamW 3e-3, batch 32);
- autofusion's default search: the installed CLI run as a user would, ``autofusion search
  --data M [--task T] [--columns ...] --tracking-uri ... --experiment ... --quiet`` with no
  tuning flags, then ``autofusion predict`` on the test rows; ``--repeats N`` runs it N
  times (same default seed: is it steady?) and reports the mean (min-max); ``--search-seeds
  0,1,2`` runs it once per seed instead (``--seed S``: the spread a user meets, since the
  trials' sampling and initial weights are one draw per seed), the fixed model too.

Where the CLI cannot run a data set yet (houses: tabular columns, several images, a numeric
target), its rows say "not supported yet" with the CLI's one-line error.

    python benchmarks/realdata.py                                   # memes and houses, 1 search each
    python benchmarks/realdata.py --repeats 3 --json realdata.json  # three runs, one seed: steady?
    python benchmarks/realdata.py --search-seeds 0,1,2              # one run per seed: the spread
    python benchmarks/realdata.py --datasets memes --methods sklearn
    python benchmarks/realdata.py --data my.csv --columns image=poster,text=plot --label genre
    python benchmarks/realdata.py --datasets memes --search-args "--num-trials 24"
    python benchmarks/realdata.py --smoke                           # tiny generated data: CI runs this

Prints one markdown table per data set (method, test metrics, the primary metric on the
validation rows, wall seconds) and whether the default search beats the best scikit-learn
reference on the primary metric(s). The validation column shows whether a method that wins on
test could have been told apart on the rows every choice is made on (the search's trials,
scikit-learn's C): on a small split the two can disagree. Nothing here
imports autofusion: the CLI is the interface that is measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

MODALITIES = ("image", "text", "audio", "video")
TABULAR = ("numeric", "categorical")
ROLES = (*MODALITIES, *TABULAR, "label", "split", "ignore")
EXTENSIONS = {
    "image": {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"},
    "audio": {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aiff", ".aif"},
    "video": {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"},
}
LABEL_NAMES = ("label", "labels", "target", "class", "y", "category", "genre")
SPLIT_NAMES = ("split", "subset", "fold_name", "partition")
SPLIT_CODES = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "dev": 1,
               "test": 2, "testing": 2, "holdout": 2}
SPLIT_NAMES_OUT = ("train", "val", "test")
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
ALPHA_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)

# The real data sets: the column roles, and the data arguments a user would give the CLI.
BUILTIN: dict[str, dict[str, Any]] = {
    "memes": {"roles": {"image": ["image"], "text": ["text"]}, "label": "label",
              "cli": ["--task", "image_text"]},
    "houses": {"roles": {"image": ["frontal", "bedroom", "bathroom", "kitchen"],
                         "numeric": ["bedrooms", "bathrooms", "area"], "categorical": ["zipcode"]},
               "label": "price", "log": ["area"], "cli": ["--columns", "label=price"]},
}


# --------------------------------------------------------------------------- data sets


@dataclass
class Dataset:
    """One data set as every method sees it: the rows, their roles, the split and the
    arguments that point autofusion's CLI at it."""

    name: str
    manifest: Path                 # the file the CLI reads (has the split, or is the original)
    df: pd.DataFrame
    roles: dict[str, list[str]]    # image/text/audio/video/numeric/categorical -> columns
    label: str
    split: np.ndarray              # 0 train, 1 val, 2 test per row
    target: str                    # classification | regression
    log_columns: list[str]
    cli_args: list[str]            # --task / --columns for autofusion search
    base: Path                     # folder that relative file paths resolve against
    split_source: str = ""

    def idx(self, code: int) -> np.ndarray:
        """Row positions of one split."""
        return np.flatnonzero(self.split == code)

    @property
    def y(self) -> np.ndarray:
        """The label column as the metrics see it (strings for classes, floats otherwise)."""
        col = self.df[self.label]
        if self.target == "regression":
            return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        return np.array([_label_str(v) for v in col], dtype=object)

    @property
    def log_target(self) -> bool:
        """Regression on a positive target is scored (and fitted) on its log."""
        y = self.y
        return self.target == "regression" and bool(np.all(y[np.isfinite(y)] > 0))


def _label_str(v: Any) -> str:
    """A class label as text: 1, 1.0 and "1" are the same class."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def read_table(path: Path) -> pd.DataFrame:
    """A manifest (CSV, TSV, JSONL/JSON or Parquet) as a DataFrame."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, dtype=False)
    if suffix == ".json":
        return pd.read_json(path, dtype=False)
    return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")


def parse_columns(text: str | None) -> dict[str, list[str]]:
    """``image=a,image=b,numeric=area`` -> ``{"image": ["a", "b"], "numeric": ["area"]}``."""
    out: dict[str, list[str]] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        role, sep, col = (s.strip() for s in part.partition("="))
        if not sep or role not in ROLES or not col:
            raise SystemExit(f"--columns: expected ROLE=COLUMN with ROLE in {', '.join(ROLES)}, got {part!r}")
        out.setdefault(role, []).append(col)
    return out


def infer_role(name: str, values: pd.Series) -> str:
    """A column's modality from its content: file paths with image/audio/video extensions,
    numbers, low-cardinality strings (categorical) or free text; row ids are ignored."""
    cells = [str(v).strip() for v in values if not _missing(v) and str(v).strip()]
    if not cells:
        return "ignore"
    low = name.lower()
    if low in ("id", "idx", "index", "key", "uid", "row") or low.endswith("_id"):
        return "ignore"
    suffixes = [Path(c).suffix.lower() for c in cells]
    for role, known in EXTENSIONS.items():
        if sum(s in known for s in suffixes) >= 0.9 * len(cells):
            return role
    numbers = pd.to_numeric(pd.Series(cells), errors="coerce")
    if numbers.notna().mean() >= 0.95:
        if any(k in low for k in ("zip", "code", "postal", "category", "type")):
            return "categorical"
        ints = numbers.dropna()
        if (ints % 1 == 0).all() and ints.nunique() == len(cells) and ints.max() - ints.min() == len(cells) - 1:
            return "ignore"  # 0..N-1 or 1..N: a row number
        return "numeric"
    distinct = len(set(cells))
    words = float(np.mean([len(c.split()) for c in cells]))
    if distinct <= max(20, 0.05 * len(cells)) and words <= 3:
        return "categorical"
    return "text"


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def find_label(df: pd.DataFrame, given: str | None) -> str:
    """The label column: ``--label``, else the first column named like one."""
    if given:
        if given not in df.columns:
            raise SystemExit(f"--label {given!r}: no such column; columns: {', '.join(df.columns)}")
        return given
    lower = {c.lower(): c for c in df.columns}
    for n in LABEL_NAMES:
        if n in lower:
            return lower[n]
    raise SystemExit(f"no label column among {', '.join(df.columns)}; name it with --label COLUMN")


def infer_target(values: pd.Series) -> str:
    """Regression for a numeric label with fractional values or more than 20 distinct values."""
    nums = pd.to_numeric(values, errors="coerce")
    if nums.notna().mean() < 0.95:
        return "classification"
    nums = nums.dropna()
    return "regression" if (nums % 1 != 0).any() or nums.nunique() > 20 else "classification"


def skewed_columns(df: pd.DataFrame, numeric: list[str]) -> list[str]:
    """Positive numeric columns that span an order of magnitude with a right skew (above 1):
    logged before a linear model (on houses: area, as in the data set's reference)."""
    out = []
    for c in numeric:
        v = pd.to_numeric(df[c], errors="coerce").dropna()
        if len(v) > 2 and (v > 0).all() and v.max() >= 10 * v.min() and float(v.skew()) > 1:
            out.append(c)
    return out


def make_split(labels: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """A seeded 70/15/15 train/val/test split, stratified by class where every class allows it."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(n)

    def cut(idx: np.ndarray, fraction: float, s: int) -> tuple[np.ndarray, np.ndarray]:
        strata = labels[idx] if labels is not None else None
        if strata is not None:
            _, counts = np.unique(strata, return_counts=True)
            if counts.min() < 2 or round(len(idx) * fraction) < len(counts):
                strata = None
        return train_test_split(idx, test_size=fraction, random_state=s, stratify=strata)

    rest, test = cut(rows, 0.15, seed)
    train, val = cut(rest, 0.15 / 0.85, seed + 1)
    split = np.zeros(n, dtype=np.int8)
    split[val], split[test] = 1, 2
    return split


def parse_split(values: pd.Series) -> np.ndarray | None:
    """The manifest's split column as codes, or None when a cell is not a split name."""
    codes = [SPLIT_CODES.get(str(v).strip().lower()) for v in values]
    return None if any(c is None for c in codes) else np.array(codes, dtype=np.int8)


def absolute(base: Path, v: Any) -> Any:
    """A file cell as an absolute path (empty cells stay empty)."""
    if _missing(v) or not str(v).strip():
        return v
    p = Path(str(v).strip())
    return str(p if p.is_absolute() else (base / p).resolve())


def with_absolute_paths(ds: Dataset, df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose image/audio/video cells are absolute paths."""
    out = df.copy()
    for role in ("image", "audio", "video"):
        for c in ds.roles.get(role, []):
            out[c] = [absolute(ds.base, v) for v in out[c]]
    return out


def load_dataset(name: str, manifest: Path, roles: dict[str, list[str]] | None, label: str | None,
                 log_columns: list[str] | None, cli_args: list[str] | None, target: str | None, seed: int,
                 tmp: Path, tasks: dict[str, set[str]]) -> Dataset:
    """Reads a manifest, finds its roles and split; when it has no split column, writes a
    copy with a seeded one (and absolute file paths) that every method reads."""
    manifest = manifest.resolve()
    if not manifest.exists():
        raise SystemExit(f"{manifest}: no such manifest")
    df = read_table(manifest)
    label = find_label(df, label or (roles or {}).get("label", [None])[0])
    split_col = next((c for c in df.columns if c.lower() in SPLIT_NAMES), None)
    if roles is None or not any(r in roles for r in (*MODALITIES, *TABULAR)):
        explicit = roles or {}
        taken = {c for cols in explicit.values() for c in cols} | {label, split_col}
        roles = {r: list(c) for r, c in explicit.items() if r not in ("label", "split", "ignore")}
        for c in df.columns:
            if c not in taken:
                roles.setdefault(infer_role(c, df[c]), []).append(c)
        roles.pop("ignore", None)
    roles = {r: cols for r, cols in roles.items() if r in (*MODALITIES, *TABULAR) and cols}
    missing = int(df[label].isna().sum())
    if missing:
        raise SystemExit(f"{manifest}: {missing} row(s) have no {label!r}; drop them first (every method must see the same rows)")
    target = target or infer_target(df[label])
    split = parse_split(df[split_col]) if split_col else None
    ds = Dataset(name, manifest, df, roles, label, np.zeros(len(df), np.int8), target,
                 log_columns if log_columns is not None else skewed_columns(df, roles.get("numeric", [])),
                 [], manifest.parent, f"the manifest's {split_col!r} column")
    if split is None:
        strata = np.array([_label_str(v) for v in df[label]], dtype=object) if target == "classification" else None
        split = make_split(strata, len(df), seed)
        ds.split_source = f"seeded stratified 70/15/15 (seed {seed}), written into a copy"
        copy = with_absolute_paths(ds, df)
        col = "split" if "split" not in copy.columns else "benchmark_split"
        copy[col] = [SPLIT_NAMES_OUT[c] for c in split]
        ds.manifest = tmp / f"{name}-manifest.csv"
        copy.to_csv(ds.manifest, index=False)
        split_col = col
    ds.split = split
    ds.cli_args = cli_args if cli_args is not None else cli_data_args(roles, label, split_col, tasks)
    return ds


def cli_data_args(roles: dict[str, list[str]], label: str, split_col: str | None,
                  tasks: dict[str, set[str]]) -> list[str]:
    """``--task T --columns ...`` for a manifest: the built-in task whose modalities are the
    manifest's (one column each), else only the columns the CLI can be told about."""
    mods = {r for r in roles if r in MODALITIES}
    single = {r: roles[r][0] for r in mods if len(roles[r]) == 1}
    columns = [f"{r}={c}" for r, c in sorted(single.items())] + [f"label={label}"]
    if split_col:
        columns.append(f"split={split_col}")
    task = next((t for t, m in tasks.items() if m == mods), None)
    exact = task is not None and len(single) == len(mods) and not any(r in roles for r in TABULAR)
    return (["--task", task] if exact else []) + ["--columns", ",".join(columns)]


# --------------------------------------------------------------------------- features


@dataclass
class Block:
    """One modality's features for every row, and the seconds it took to extract them."""

    name: str
    make: Callable[[np.ndarray], Any]   # train rows -> feature matrix of all rows (fitted on train)
    seconds: float


def image_pixels(paths: list[Any], size: int = 32) -> np.ndarray:
    """Grey ``size`` x ``size`` pixels in [0, 1]; zeros for a missing or unreadable file."""
    from PIL import Image

    out = np.zeros((len(paths), size * size), dtype=np.float32)
    for i, p in enumerate(paths):
        if _missing(p) or not str(p).strip():
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
        if _missing(p) or not str(p).strip():
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
        if _missing(p) or not str(p).strip():
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


def standardised(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Dense features standardised with the train rows' mean and deviation."""
    from sklearn.preprocessing import StandardScaler

    return lambda train: StandardScaler().fit(x[train]).transform(x)


def text_tfidf(texts: list[str]) -> Callable[[np.ndarray], Any]:
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


def tabular(ds: Dataset) -> Callable[[np.ndarray], np.ndarray]:
    """Numbers (logged where skewed, median-imputed, standardised) and one-hot categories."""
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num_cols, cat_cols = ds.roles.get("numeric", []), ds.roles.get("categorical", [])
    num = np.column_stack([_numeric(ds.df[c], c in ds.log_columns) for c in num_cols]) if num_cols else None
    cat = np.column_stack([[_label_str(v) if not _missing(v) else "" for v in ds.df[c]] for c in cat_cols]) \
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
    v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    return np.log(v) if log else v


def build_blocks(ds: Dataset) -> list[Block]:
    """Every modality's features (pixels, TF-IDF, MFCC, frames, tabular), timed."""
    blocks = []
    extractors: dict[str, Callable[[], Callable[[np.ndarray], Any]]] = {
        "text": lambda: text_tfidf([" ".join("" if _missing(v) else str(v) for v in row)
                                    for row in ds.df[ds.roles["text"]].itertuples(index=False)]),
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


# --------------------------------------------------------------------------- metrics


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (over the classes present in the test labels)."""
    from sklearn.metrics import accuracy_score, f1_score

    t, p = [str(v) for v in y_true], [str(v) for v in y_pred]
    return {"accuracy": float(accuracy_score(t, p)),
            "f1_macro": float(f1_score(t, p, labels=sorted(set(t)), average="macro", zero_division=0))}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, log_target: bool, floor: float) -> dict[str, float]:
    """R2 (on the log target when it is positive; predictions below ``floor`` count as
    ``floor`` there), MAPE, MAE and RMSE on the original scale."""
    from sklearn.metrics import r2_score

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    y_pred = np.where(np.isfinite(y_pred), y_pred, np.nanmean(y_true))
    err = y_pred - y_true
    out = {"r2_log" if log_target else "r2": float(r2_score(np.log(y_true), np.log(np.maximum(y_pred, floor)))
                                                   if log_target else r2_score(y_true, y_pred))}
    if np.all(y_true != 0):
        out["mape"] = float(np.mean(np.abs(err) / np.abs(y_true)))
    out["mae"] = float(np.mean(np.abs(err)))
    out["rmse"] = float(np.sqrt(np.mean(err ** 2)))
    return out


def score(ds: Dataset, pred: np.ndarray, split: int = 2) -> dict[str, float]:
    """Every method's metrics on ``split`` (test by default), from its predictions in that
    split's row order."""
    y = ds.y[ds.idx(split)]
    if ds.target == "classification":
        return classification_metrics(y, pred)
    train = ds.y[ds.idx(0)]
    return regression_metrics(y, pred, ds.log_target, float(np.nanmin(train[train > 0])) / 10 if ds.log_target else 0.0)


def primary_metrics(target: str, log_target: bool) -> list[str]:
    """The metrics the verdict is on: accuracy and macro-F1, or R2 (on the log target)."""
    return ["accuracy", "f1_macro"] if target == "classification" else (["r2_log"] if log_target else ["r2"])


# --------------------------------------------------------------------------- scikit-learn references


@dataclass
class Row:
    """One method's line in the table."""

    method: str
    kind: str                                  # sklearn | fixed | search
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""
    error: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)   # per repeat: metrics, seconds, ...
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)        # the same metrics on the validation rows


def _select(fit: Callable[[float], Any], grid: tuple[float, ...], val_score: Callable[[Any], float]) -> tuple[Any, float]:
    """The model of ``grid`` best on validation (the first of ties)."""
    best, best_v, best_s = None, grid[0], -math.inf
    for v in grid:
        m = fit(v)
        s = val_score(m)
        if s > best_s:
            best, best_v, best_s = m, v, s
    return best, best_v


def classifier(x: Any, y: np.ndarray, tr: np.ndarray, va: np.ndarray) -> tuple[Any, float]:
    """Class-balanced logistic regression, C picked on validation accuracy."""
    from sklearn.linear_model import LogisticRegression

    def fit(c: float) -> Any:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x[tr], y[tr])

    return _select(fit, C_GRID, lambda m: float(np.mean(m.predict(x[va]) == y[va])))


def regressor(x: Any, y: np.ndarray, tr: np.ndarray, va: np.ndarray) -> tuple[Any, float]:
    """Ridge regression, alpha picked by RidgeCV's leave-one-out on the train rows (what a
    ten-line script does; on houses it reproduces the data set's published reference)."""
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=ALPHA_GRID).fit(x[tr], y[tr])
    return model, float(model.alpha_)


def sklearn_rows(ds: Dataset) -> list[Row]:
    """The scikit-learn references: each modality alone, early and late fusion, the trivial
    baseline; every row's seconds include extracting the features it uses."""
    from scipy import sparse
    from scipy.linalg import LinAlgWarning
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=LinAlgWarning)  # RidgeCV's small alphas on pixels
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    tr, va, te = ds.idx(0), ds.idx(1), ds.idx(2)
    blocks = build_blocks(ds)
    feats: dict[str, Any] = {}
    for b in blocks:
        t0 = time.perf_counter()
        feats[b.name] = b.make(tr)
        b.seconds += time.perf_counter() - t0
    rows: list[Row] = []
    clf = ds.target == "classification"
    y = ds.y
    if not clf and ds.log_target:
        y = np.log(y)
    label = {"text": "TF-IDF word 1-2 + char 2-5 grams", "image": "grey 32x32 pixels", "audio": "MFCC mean/std",
             "video": "grey 16x16 frame mean/std", "tabular": "tabular fields"}
    model_name = "logistic regression" if clf else "ridge"
    per: dict[str, Any] = {}   # block -> (val, test) scores (probabilities or predictions)

    def scores(split: int, pred: np.ndarray) -> dict[str, float]:
        return score(ds, pred if clf else _back(ds, pred), split)

    def add(name: str, x: Any, seconds: float) -> Any:
        t0 = time.perf_counter()
        model, hp = (classifier if clf else regressor)(x, y, tr, va)
        pred = model.predict(x[te])
        rows.append(Row(name, "sklearn", scores(2, pred), seconds + time.perf_counter() - t0,
                        f"{'C' if clf else 'alpha'}={hp:g}", val=scores(1, model.predict(x[va]))))
        return model

    for b in blocks:
        extra = f", mean over {len(ds.roles[b.name])} columns" if b.name in ds.roles and len(ds.roles[b.name]) > 1 else ""
        model = add(f"{b.name}: {label[b.name]}{extra} + {model_name}", feats[b.name], b.seconds)
        per[b.name] = [model.predict_proba(feats[b.name][i]) if clf else model.predict(feats[b.name][i]) for i in (va, te)]
        if clf:
            classes = model.classes_
    if len(blocks) > 1:
        t0 = time.perf_counter()
        xs = [unit_rows(feats[b.name]) for b in blocks]
        x = sparse.hstack([sparse.csr_matrix(m) if not sparse.issparse(m) else m for m in xs]).tocsr() \
            if any(sparse.issparse(m) for m in xs) else np.hstack(xs)
        add("early fusion: all blocks (each scaled to unit row norm) + " + model_name, x,
            sum(b.seconds for b in blocks) + time.perf_counter() - t0)
        means = [np.mean([per[b.name][k] for b in blocks], axis=0) for k in (0, 1)]
        val_pred, pred = [classes[m.argmax(axis=1)] if clf else m for m in means]
        rows.append(Row("late fusion: mean of the per-modality " + ("probabilities" if clf else "predictions"),
                        "sklearn", scores(2, pred), sum(r.seconds for r in rows[:len(blocks)]), "the models above",
                        val=scores(1, val_pred)))
    t0 = time.perf_counter()
    if clf:
        values, counts = np.unique(y[tr], return_counts=True)
        const = values[counts.argmax()]
        rows.append(Row("majority class", "sklearn", scores(2, np.full(len(te), const, dtype=object)),
                        time.perf_counter() - t0, f"always {const!r}", val=scores(1, np.full(len(va), const, dtype=object))))
    else:
        const = float(np.mean(y[tr]))
        rows.append(Row("train mean" + (" of the log target" if ds.log_target else ""), "sklearn",
                        scores(2, np.full(len(te), const)), time.perf_counter() - t0,
                        val=scores(1, np.full(len(va), const))))
    return rows


def _back(ds: Dataset, pred: np.ndarray) -> np.ndarray:
    """Predictions on the log target back on the original scale."""
    return np.exp(pred) if ds.log_target else pred


# --------------------------------------------------------------------------- autofusion through its CLI


@dataclass
class CliResult:
    """One CLI command: exit status, seconds, output."""

    rc: int
    seconds: float
    out: str
    err: str

    def error_line(self) -> str:
        """The CLI's one-line error (its ``error:`` line, else the last line it wrote)."""
        lines = [ln.strip() for ln in (self.err + "\n" + self.out).splitlines() if ln.strip()]
        flagged = [ln for ln in lines if ln.lower().startswith(("error", "aborted"))]
        line = (flagged or lines or [f"exit status {self.rc}"])[-1]
        return line[:400]


def autofusion_exe() -> str:
    """The installed ``autofusion`` next to this Python (a venv), else the one on PATH."""
    here = Path(sys.executable).parent / "autofusion"
    found = str(here) if here.exists() else shutil.which("autofusion")
    if not found:
        raise SystemExit("the autofusion command is not installed (pip install -e .)")
    return found


def run_cli(args: list[str], cwd: Path, timeout: float, home: Path | None = None) -> CliResult:
    """Runs ``autofusion ARGS`` as a user would; wall seconds of the whole command."""
    env = {**os.environ, "COLUMNS": "250", "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    if home is not None:
        env["AUTOFUSION_HOME"] = str(home)
    t0 = time.perf_counter()
    try:
        p = subprocess.run([autofusion_exe(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        return CliResult(p.returncode, time.perf_counter() - t0, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return CliResult(124, time.perf_counter() - t0, out, f"error: timed out after {timeout:.0f}s")


def known_tasks() -> dict[str, set[str]]:
    """Built-in tasks and their modalities, as ``autofusion spaces list`` prints them (read
    here, not from a subprocess: a second of imports that is no part of any figure)."""
    from autofusion.spaces import builtin_tasks, load_space

    return {t: set(load_space(t).modalities) for t in builtin_tasks()}


def model_uri(res: CliResult, store: str, experiment: str) -> str | None:
    """The best model's URI from the summary (``Model: URI (run ...``), else from the store."""
    m = re.search(r"^Model: (\S+)", res.out, re.M)
    if m:
        return m.group(1)
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=store)
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id], "tags.`autofusion.model_uri` != ''",
                                  order_by=["start_time DESC"], max_results=1) if exp else []
        return runs[0].data.tags["autofusion.model_uri"] if runs else None
    except Exception:  # noqa: BLE001 - the store is only a fallback
        return None


def last_value(args: list[str], flag: str) -> str | None:
    """The value of the last ``flag VALUE`` in ``args`` (click keeps the last one)."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def predictions(ds: Dataset, out: Path) -> np.ndarray:
    """Predicted labels (or values) from ``autofusion predict``'s output, in row order."""
    df = pd.read_csv(out)
    new = [c for c in df.columns if c not in ds.df.columns or c.startswith("predicted_")]
    if ds.target == "regression":
        col = next(c for c in ("predicted_prediction", "prediction", "predicted_label", "label") if c in new)
        return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    col = next(c for c in ("predicted_label", "label") if c in new)
    return np.array([_label_str(v) for v in df[col]], dtype=object)


def autofusion_run(ds: Dataset, extra: list[str], tmp: Path, tag: str, timeout: float) -> dict[str, Any]:
    """One ``autofusion search`` (+ ``autofusion predict`` on the validation and test rows),
    scored by this script. Returns the run's record: test and validation metrics or error,
    seconds, the model."""
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    experiment = f"realdata-{ds.name}-{tag}"
    args = ["search", "--data", str(ds.manifest), *ds.cli_args, "--tracking-uri", store,
            "--experiment", experiment, "--quiet", *extra]
    res = run_cli(args, tmp, timeout, home=tmp / f"home-{tag}")
    record: dict[str, Any] = {"command": "autofusion " + shlex.join(args), "seconds": res.seconds, "rc": res.rc}
    best = re.search(r"^Best: (.*)$", res.out, re.M)
    if best:
        record["autofusion_says"] = best.group(1).strip()
    sizes = re.search(r"'train': (\d+), 'val': (\d+), 'test': (\d+)", res.out)
    if sizes and [int(v) for v in sizes.groups()] != [len(ds.idx(c)) for c in range(3)]:
        record["split_mismatch"] = "autofusion's train/val/test: " + "/".join(sizes.groups())
    if res.rc != 0:
        record["error"] = ("not supported yet: " if res.rc == 2 else f"failed (exit {res.rc}): ") + res.error_line()
        return record
    uri = model_uri(res, store, experiment)
    if uri is None:
        record["error"] = "no model was logged: " + res.error_line()
        return record
    record["model_uri"] = uri
    test_rows = tmp / f"{ds.name}-val-test.csv"  # the validation rows, then the test rows
    if not test_rows.exists():
        with_absolute_paths(ds, ds.df.iloc[np.concatenate([ds.idx(1), ds.idx(2)])]).to_csv(test_rows, index=False)
    out = tmp / f"{ds.name}-{tag}-predictions.csv"
    pargs = ["predict", "--model", uri, "--data", str(test_rows), "--output", str(out), "--tracking-uri", store]
    columns = ",".join(c for c in (last_value(args, "--columns") or "").split(",") if not c.startswith("split="))
    if columns:
        pargs += ["--columns", columns]  # the test rows carry no split column
    pred = run_cli(pargs, tmp, timeout)
    record["predict_seconds"] = pred.seconds
    if pred.rc != 0:
        record["error"] = f"predict failed (exit {pred.rc}): " + pred.error_line()
        return record
    labels = predictions(ds, out)
    n_val = len(ds.idx(1))
    record["val_metrics"] = score(ds, labels[:n_val], 1)
    record["metrics"] = score(ds, labels[n_val:])
    return record


def neural_row(name: str, kind: str, runs: list[dict[str, Any]]) -> Row:
    """A row from one or more CLI runs: the mean (min-max) of the metrics, or the error."""
    ok = [r for r in runs if "metrics" in r]
    row = Row(name, kind, runs=runs, seconds=statistics.mean(r["seconds"] for r in runs))
    if not ok:
        row.error = runs[0].get("error", "no result")
        return row
    for k in ok[0]["metrics"]:
        vals = [r["metrics"][k] for r in ok]
        row.metrics[k] = statistics.mean(vals)
        row.spread[k] = (min(vals), max(vals))
    for k in ok[0].get("val_metrics", {}):
        row.val[k] = statistics.mean(r["val_metrics"][k] for r in ok)
    row.seconds = statistics.mean(r["seconds"] for r in ok)
    if len(runs) > 1:
        row.spread["seconds"] = (min(r["seconds"] for r in ok), max(r["seconds"] for r in ok))
    failed = len(runs) - len(ok)
    row.note = f"{len(ok)} run(s)" + (f", {failed} failed: {runs[[('metrics' in r) for r in runs].index(False)].get('error')}"
                                      if failed else "")
    mismatch = next((r["split_mismatch"] for r in ok if "split_mismatch" in r), None)
    if mismatch:
        row.note += f"; NOT THE SAME SPLIT: {mismatch}"
    best = [re.match(r"trial \d+ \(([^)]*)\)", r.get("autofusion_says", "")) for r in ok]
    if all(best):
        row.note += "; best trial: " + ", ".join(b.group(1) for b in best)
    return row


# --------------------------------------------------------------------------- report


def fmt(row: Row, key: str) -> str:
    """A metric cell: the value, with the spread over repeats in brackets."""
    if key not in row.metrics:
        return "-"
    lo_hi = row.spread.get(key)
    return number(row.metrics[key]) + (f" ({number(lo_hi[0])}-{number(lo_hi[1])})" if lo_hi and len(row.runs) > 1 else "")


def number(v: float) -> str:
    """Scores with 3 decimals; errors in the target's units (prices) as whole numbers."""
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3f}"


def table(ds: Dataset, rows: list[Row]) -> str:
    """The data set's markdown table."""
    keys = ["accuracy", "f1_macro"] if ds.target == "classification" else \
        [("r2_log" if ds.log_target else "r2"), "mape", "mae", "rmse"]
    head = {"accuracy": "accuracy", "f1_macro": "macro-F1", "r2_log": "R2 (log target)", "r2": "R2",
            "mape": "MAPE", "mae": "MAE", "rmse": "RMSE"}
    on_val = primary_metrics(ds.target, ds.log_target)[-1]  # macro-F1 (what the search ranks on), or R2
    lines = ["| method | " + " | ".join(head[k] for k in keys) + f" | val {head[on_val]} | wall s | note |",
             "|---|" + "---|" * (len(keys) + 3)]
    for r in rows:
        if r.error:
            cells = [r.error.replace("|", "/")] + ["-"] * len(keys)
            lines.append(f"| {r.method} | " + " | ".join(cells) + f" | {r.seconds:.1f} | |")
            continue
        sec = f"{r.seconds:.1f}" + (f" ({r.spread['seconds'][0]:.0f}-{r.spread['seconds'][1]:.0f})"
                                    if "seconds" in r.spread else "")
        val = number(r.val[on_val]) if on_val in r.val else "-"
        lines.append(f"| {r.method} | " + " | ".join(fmt(r, k) for k in keys) + f" | {val} | {sec} | "
                     + r.note.replace("|", "/") + " |")
    return "\n".join(lines)


def verdict(ds: Dataset, rows: list[Row]) -> tuple[str, dict[str, Any]]:
    """Whether the default search beats the best scikit-learn reference on each primary metric."""
    refs = [r for r in rows if r.kind == "sklearn" and not r.error]
    search = next((r for r in rows if r.kind == "search"), None)
    out: dict[str, Any] = {}
    parts = []
    for k in primary_metrics(ds.target, ds.log_target):
        if not refs:
            continue
        best = max(refs, key=lambda r: r.metrics.get(k, -math.inf))
        item = {"best_reference": best.method, "reference": best.metrics[k]}
        if search is None:
            item["beats"] = None
            parts.append(f"{k}: best scikit-learn reference {best.metrics[k]:.3f} ({best.method}); search not run")
        elif search.error:
            item["beats"] = False
            parts.append(f"{k}: NO, the search did not run ({search.error}); best reference "
                         f"{best.metrics[k]:.3f} ({best.method})")
        else:
            v = search.metrics[k]
            lo = search.spread.get(k, (v, v))[0]
            item.update(search=v, search_min=lo, beats=v > best.metrics[k], beats_every_run=lo > best.metrics[k])
            word = "YES" if v > best.metrics[k] else "NO"
            parts.append(f"{k}: {word}, search {v:.3f} (worst run {lo:.3f}) vs best reference {best.metrics[k]:.3f} "
                         f"({best.method})")
        out[k] = item
    return f"Does autofusion's default search beat the best scikit-learn reference on {ds.name}? " + "; ".join(parts), out


# --------------------------------------------------------------------------- main


def run_args(search_args: list[str], repeats: int, seeds: list[int] | None) -> list[list[str]]:
    """The flags of each repeated run: the same ones ``repeats`` times, or one run per seed."""
    if seeds is None:
        return [list(search_args)] * repeats
    return [[*search_args, "--seed", str(s)] for s in seeds]


def seeds_label(seeds: list[int] | None) -> str:
    """What a row's runs differ by, for its method column."""
    return f", seeds {', '.join(map(str, seeds))}" if seeds else ""


def bench(ds: Dataset, methods: set[str], repeats: int, search_args: list[str], tmp: Path, timeout: float,
          seeds: list[int] | None = None) -> list[Row]:
    """All methods on one data set, one after another (so their wall times do not overlap).
    With ``seeds``, the fixed model and each search run once per seed (``--seed``), else the
    fixed model once and the search ``repeats`` times with the same flags."""
    rows: list[Row] = []
    if "sklearn" in methods:
        rows += sklearn_rows(ds)
    if "fixed" in methods:
        runs = [autofusion_run(ds, [*args, "--num-trials", "1"], tmp, f"fixed{i + 1}", timeout)
                for i, args in enumerate(run_args(search_args, 1, seeds))]
        rows.append(neural_row("autofusion fixed hand-built model (search --num-trials 1: concat + MLP"
                               + seeds_label(seeds) + ")", "fixed", runs))
    if "search" in methods:
        runs = []
        for i, args in enumerate(run_args(search_args, repeats, seeds)):
            runs.append(autofusion_run(ds, args, tmp, f"search{i + 1}", timeout))
            if runs[-1].get("rc") == 2:
                break  # the CLI refused the data: every repeat would
        label = "autofusion default search" + (f" ({shlex.join(search_args)})" if search_args else "")
        rows.append(neural_row(label + seeds_label(seeds), "search", runs))
    if "tabular" in methods and ds.roles.get("numeric", []) + ds.roles.get("categorical", []):
        only = tabular_only(ds, tmp)
        runs = [autofusion_run(only, args, tmp, f"tabular{i + 1}", timeout)
                for i, args in enumerate(run_args(search_args, repeats, seeds))]
        rows.append(neural_row("autofusion default search, tabular fields only (no photos" + seeds_label(seeds) + ")",
                               "search", runs))
    return rows


def tabular_only(ds: Dataset, tmp: Path) -> Dataset:
    """The data set without its media columns (a copy of the manifest in the scratch folder):
    what fusing the photos adds, measured by the same default search."""
    media = [c for r in ("image", "text", "audio", "video") for c in ds.roles.get(r, [])]
    manifest = tmp / f"{ds.name}-tabular-only.csv"
    pd.read_csv(ds.manifest).drop(columns=media).to_csv(manifest, index=False)
    roles = {r: c for r, c in ds.roles.items() if r not in ("image", "text", "audio", "video")}
    return replace(ds, manifest=manifest, roles=roles)


def smoke_dataset(tmp: Path) -> Path:
    """A tiny image+text manifest, as ``autofusion data demo`` writes it (no split column)."""
    from autofusion.data.demo import write_demo

    return write_demo("image_text", tmp / "demo", num_samples=60)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="of memes,houses (default: both, unless --data is given)")
    ap.add_argument("--data", default=None, help="a manifest of your own")
    ap.add_argument("--columns", default=None, metavar="ROLE=COL,...",
                    help=f"roles of --data's columns ({', '.join(ROLES)}; a role may repeat); only these are used")
    ap.add_argument("--label", default=None, help="--data's label column")
    ap.add_argument("--target", choices=["classification", "regression"], default=None, help="default: from the label")
    ap.add_argument("--methods", default=None,
                    help="of sklearn,fixed,search,tabular (default: all; --smoke: sklearn,search); tabular: the "
                         "default search on a data set's tabular fields alone")
    ap.add_argument("--repeats", type=int, default=1, help="default searches per data set, same seed (is it steady?)")
    ap.add_argument("--search-seeds", default=None, metavar="S,S,...",
                    help="one default search (and fixed model) per seed instead of --repeats: the spread over seeds")
    ap.add_argument("--search-args", default="", help="extra flags for both autofusion searches, e.g. '--num-trials 24'")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split made for a manifest without one")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per autofusion command")
    ap.add_argument("--json", default=None, metavar="OUT", help="write the raw figures here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (stores, predictions) and print it")
    ap.add_argument("--smoke", action="store_true", help="tiny generated data, 1 trial of 1 epoch: checks the script works")
    a = ap.parse_args(argv)
    search_args = shlex.split(a.search_args)
    try:
        seeds = [int(v) for v in a.search_seeds.split(",")] if a.search_seeds else None
    except ValueError:
        raise SystemExit(f"--search-seeds: whole numbers separated by commas, not {a.search_seeds!r}") from None
    if seeds is not None and "--seed" in search_args:
        raise SystemExit("--search-seeds and a --seed in --search-args: give one of them")
    tmp = Path(tempfile.mkdtemp(prefix="afx-realdata-"))
    known = {"sklearn", "fixed", "search", "tabular"}
    methods = set((a.methods or ("sklearn,search" if a.smoke else ",".join(sorted(known)))).split(","))
    if methods - known:
        raise SystemExit(f"--methods: unknown {', '.join(sorted(methods - known))}")
    t_start = time.time()
    tasks = known_tasks()
    specs: list[tuple[str, Path, dict[str, Any]]] = []
    if a.smoke:
        search_args = ["--num-trials", "1", "--max-epochs", "1", *search_args]
        specs.append(("demo-smoke", smoke_dataset(tmp), {}))
    else:
        names = a.datasets.split(",") if a.datasets else ([] if a.data else list(BUILTIN))
        for n in names:
            if n not in BUILTIN:
                raise SystemExit(f"--datasets: unknown {n!r}; known: {', '.join(BUILTIN)}")
            specs.append((n, SHARED_DATA / n / "manifest.csv", BUILTIN[n]))
    if a.data:
        roles = parse_columns(a.columns) if a.columns else None
        specs.append((Path(a.data).resolve().parent.name or Path(a.data).stem, Path(a.data), {"roles": roles}))
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
                              "python": platform.python_version(), "repeats": len(seeds) if seeds else a.repeats,
                              "search_seeds": seeds, "search_args": search_args,
                              "methods": sorted(methods), "datasets": []}
    for name, manifest, spec in specs:
        ds = load_dataset(name, manifest, spec.get("roles"), a.label if "cli" not in spec else spec.get("label"),
                          spec.get("log"), spec.get("cli"), a.target if "cli" not in spec else None, a.seed, tmp, tasks)
        counts = [len(ds.idx(c)) for c in range(3)]
        rows = bench(ds, methods, a.repeats, search_args, tmp, 300 if a.smoke else a.timeout, seeds)
        line, judged = verdict(ds, rows)
        roles = "; ".join(f"{r}: {', '.join(c)}" for r, c in ds.roles.items())
        print(f"\n### {ds.name} ({ds.target}{', log target' if ds.log_target else ''}; "
              f"{len(ds.df)} rows, train/val/test {counts[0]}/{counts[1]}/{counts[2]} from {ds.split_source})\n")
        print(f"Manifest {ds.manifest}; label {ds.label}; {roles}; autofusion data arguments: "
              f"{shlex.join(ds.cli_args) or '(none)'}\n")
        print(table(ds, rows))
        print(f"\n{line}")
        sys.stdout.flush()
        report["datasets"].append({
            "name": ds.name, "manifest": str(ds.manifest), "target": ds.target, "log_target": ds.log_target,
            "rows": len(ds.df), "split": dict(zip(SPLIT_NAMES_OUT, counts)), "split_source": ds.split_source,
            "roles": ds.roles, "label": ds.label, "cli_args": ds.cli_args, "verdict": judged,
            "methods": [{"method": r.method, "kind": r.kind, "metrics": r.metrics, "val_metrics": r.val,
                         "spread": {k: list(v) for k, v in r.spread.items()}, "seconds": r.seconds,
                         "note": r.note, "error": r.error, "runs": r.runs} for r in rows],
        })
    report["seconds"] = time.time() - t_start
    print(f"\nrealdata benchmark: {time.time() - t_start:.0f}s; test (and val) metrics of every method computed here "
          "from its predictions; val: the same metric on the validation rows, which the search and C are chosen on; "
          "scikit-learn: C picked on val accuracy, ridge alpha by RidgeCV's leave-one-out on train; "
          "wall s = feature extraction + fitting + prediction (scikit-learn), the whole `autofusion search` command "
          "(autofusion; `autofusion predict` not included)")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2, default=str))
    if a.keep:
        print(f"scratch folder kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The data sets: the registry of built-in ones (``DATASETS``), the ``Dataset`` every method
reads, and reading a manifest: column roles, label, target, the train/val/test split, and the
data arguments that point autofusion's CLI at it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
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


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one data set. A built-in one names its roles, label and CLI arguments; a
    user's manifest (``--data``) leaves what it does not give to be inferred from the columns."""

    manifest: Path
    roles: dict[str, list[str]] | None = None   # image/text/.../numeric/categorical -> columns
    label: str | None = None
    log: list[str] | None = None                # numeric columns logged for the linear models
    cli: list[str] | None = None                # data arguments for `autofusion search`; None: inferred
    target: str | None = None                   # classification | regression; None: from the label
    primary: list[str] | None = None            # the metrics the verdict is on; None: metrics.primary_metrics
    published: tuple[Published, ...] = ()       # published scores printed as fixed rows, and judged against
    note: str = ""                              # a line under the data set's heading (how it is scored)


@dataclass(frozen=True)
class Published:
    """A published score on a data set's test split: a fixed row of its table, and the bar its
    verdict holds the default search to."""

    method: str
    metrics: dict[str, float]
    source: str


def builtin(name: str, **kwargs: Any) -> DatasetSpec:
    """A built-in data set: ``../shared/data/NAME/manifest.csv`` read as ``kwargs`` say."""
    return DatasetSpec(SHARED_DATA / name / "manifest.csv", **kwargs)


# The built-in data sets (``--datasets``, default: all of them): the column roles, and the
# data arguments a user would give the CLI. A new one is one entry here.
DATASETS: dict[str, DatasetSpec] = {
    "memes": builtin("memes", roles={"image": ["image"], "text": ["text"]}, label="label",
                     cli=["--task", "image_text"]),
    "houses": builtin("houses", roles={"image": ["frontal", "bedroom", "bathroom", "kitchen"],
                                       "numeric": ["bedrooms", "bathrooms", "area"],
                                       "categorical": ["zipcode"]},
                      label="price", log=["area"], cli=["--columns", "label=price"]),
    # Shi et al. 2021's imdb_genre_prediction, its exact test split; the search runs on the manifest as it
    # comes, ranked on the benchmark's metric (AutoGluon ran with eval_metric roc_auc).
    "imdb": builtin("imdb", roles={"text": ["Title", "Description", "Director", "Actors"],
                                   "numeric": ["Rank", "Year", "Runtime (Minutes)", "Rating", "Votes",
                                               "Revenue (Millions)", "Metascore"]},
                    label="label", log=[], cli=["--metric", "val_roc_auc"], primary=["roc_auc"],
                    published=(Published("AutoGluon (published)", {"roc_auc": 0.874},
                                         "Shi et al. 2021 multimodal AutoML benchmark, imdb_genre_prediction; "
                                         "FEDOT's table aimclub/FEDOT docs/source/benchmarks/multimodal_res.csv; "
                                         "trained on all 800 train+val rows"),),
                    note="The benchmark's metric is ROC-AUC (positive class 1 = Drama): autofusion ranks its "
                         "trials by val_roc_auc, as AutoGluon was run with eval_metric roc_auc in the published "
                         "benchmark; the scikit-learn references pick C on val ROC-AUC too."),
}


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
    cli_args: list[str] = field(default_factory=list)  # --task / --columns for autofusion search
    base: Path = Path(".")         # folder that relative file paths resolve against
    split_source: str = ""
    primary: list[str] | None = None                # the verdict's metrics; None: the target's defaults
    published: tuple[Published, ...] = ()
    note: str = ""

    def idx(self, code: int) -> np.ndarray:
        """Row positions of one split."""
        return np.flatnonzero(self.split == code)

    @property
    def y(self) -> np.ndarray:
        """The label column as the metrics see it (strings for classes, floats otherwise)."""
        col = self.df[self.label]
        if self.target == "regression":
            return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        return np.array([label_str(v) for v in col], dtype=object)

    @property
    def classes(self) -> list[str]:
        """The class labels, sorted (probability columns come in this order; of two classes,
        the second is the positive one that ROC-AUC scores)."""
        return sorted(set(self.y)) if self.target == "classification" else []

    @property
    def log_target(self) -> bool:
        """Regression on a positive target is scored (and fitted) on its log."""
        y = self.y
        return self.target == "regression" and bool(np.all(y[np.isfinite(y)] > 0))


def label_str(v: Any) -> str:
    """A class label as text: 1, 1.0 and "1" are the same class."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def missing(v: Any) -> bool:
    """An empty cell: None, pandas' NA or NaN."""
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


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
    cells = [str(v).strip() for v in values if not missing(v) and str(v).strip()]
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
        return _numeric_role(low, numbers.dropna(), len(cells))
    distinct = len(set(cells))
    words = float(np.mean([len(c.split()) for c in cells]))
    if distinct <= max(20, 0.05 * len(cells)) and words <= 3:
        return "categorical"
    return "text"


def _numeric_role(low: str, numbers: pd.Series, n: int) -> str:
    """A numeric column's role: a code (categorical), a row number (ignored) or a number."""
    if any(k in low for k in ("zip", "code", "postal", "category", "type")):
        return "categorical"
    if (numbers % 1 == 0).all() and numbers.nunique() == n and numbers.max() - numbers.min() == n - 1:
        return "ignore"  # 0..N-1 or 1..N: a row number
    return "numeric"


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

    def cut(idx: np.ndarray, fraction: float, s: int) -> tuple[np.ndarray, np.ndarray]:
        strata = labels[idx] if labels is not None else None
        if strata is not None:
            _, counts = np.unique(strata, return_counts=True)
            if counts.min() < 2 or round(len(idx) * fraction) < len(counts):
                strata = None
        return train_test_split(idx, test_size=fraction, random_state=s, stratify=strata)

    rest, test = cut(np.arange(n), 0.15, seed)
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
    if missing(v) or not str(v).strip():
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


def resolve_roles(df: pd.DataFrame, roles: dict[str, list[str]] | None, label: str,
                  split_col: str | None) -> dict[str, list[str]]:
    """The modality and tabular columns: as given, else each other column's inferred role."""
    if roles is None or not any(r in roles for r in (*MODALITIES, *TABULAR)):
        explicit = roles or {}
        taken = {c for cols in explicit.values() for c in cols} | {label, split_col}
        roles = {r: list(c) for r, c in explicit.items() if r not in ("label", "split", "ignore")}
        for c in df.columns:
            if c not in taken:
                roles.setdefault(infer_role(c, df[c]), []).append(c)
        roles.pop("ignore", None)
    return {r: cols for r, cols in roles.items() if r in (*MODALITIES, *TABULAR) and cols}


def write_split(ds: Dataset, seed: int, tmp: Path) -> str:
    """Gives ``ds`` a seeded split, written into a copy of its manifest (with absolute file
    paths) that every method reads; returns the copy's split column."""
    strata = np.array([label_str(v) for v in ds.df[ds.label]], dtype=object) \
        if ds.target == "classification" else None
    ds.split = make_split(strata, len(ds.df), seed)
    ds.split_source = f"seeded stratified 70/15/15 (seed {seed}), written into a copy"
    copy = with_absolute_paths(ds, ds.df)
    col = "split" if "split" not in copy.columns else "benchmark_split"
    copy[col] = [SPLIT_NAMES_OUT[c] for c in ds.split]
    ds.manifest = tmp / f"{ds.name}-manifest.csv"
    copy.to_csv(ds.manifest, index=False)
    return col


def load_dataset(name: str, spec: DatasetSpec, seed: int, tmp: Path, tasks: dict[str, set[str]]) -> Dataset:
    """Reads a manifest, finds its roles and split; when it has no split column, writes a
    copy with a seeded one (and absolute file paths) that every method reads."""
    manifest = spec.manifest.resolve()
    if not manifest.exists():
        raise SystemExit(f"{manifest}: no such manifest")
    df = read_table(manifest)
    label = find_label(df, spec.label or (spec.roles or {}).get("label", [None])[0])
    split_col = next((c for c in df.columns if c.lower() in SPLIT_NAMES), None)
    roles = resolve_roles(df, spec.roles, label, split_col)
    absent = int(df[label].isna().sum())
    if absent:
        raise SystemExit(f"{manifest}: {absent} row(s) have no {label!r}; drop them first (every method must see the same rows)")
    log = spec.log if spec.log is not None else skewed_columns(df, roles.get("numeric", []))
    ds = Dataset(name, manifest, df, roles, label, np.zeros(len(df), np.int8), spec.target or infer_target(df[label]),
                 log, base=manifest.parent, split_source=f"the manifest's {split_col!r} column",
                 primary=spec.primary, published=spec.published, note=spec.note)
    split = parse_split(df[split_col]) if split_col else None
    if split is None:
        split_col = write_split(ds, seed, tmp)
    else:
        ds.split = split
    ds.cli_args = spec.cli if spec.cli is not None else cli_data_args(roles, label, split_col, tasks)
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


def tabular_only(ds: Dataset, tmp: Path) -> Dataset:
    """The data set without its media columns (a copy of the manifest in the scratch folder):
    what fusing the photos adds, measured by the same default search."""
    media = [c for r in MODALITIES for c in ds.roles.get(r, [])]
    manifest = tmp / f"{ds.name}-tabular-only.csv"
    pd.read_csv(ds.manifest).drop(columns=media).to_csv(manifest, index=False)
    roles = {r: c for r, c in ds.roles.items() if r not in MODALITIES}
    return replace(ds, manifest=manifest, roles=roles)


def smoke_dataset(tmp: Path) -> Path:
    """A tiny image+text manifest, as ``autofusion data demo`` writes it (no split column)."""
    from autofusion.data.demo import write_demo

    return write_demo("image_text", tmp / "demo", num_samples=60)

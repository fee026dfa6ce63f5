"""The scikit-learn references, fitted on the train rows: per modality, early fusion (one
model on every block) and late fusion (mean of the per-modality outputs), and the trivial
baseline. Classification: class-balanced logistic regression, C picked on the validation
rows' first primary metric (accuracy; imdb: ROC-AUC), and gradient-boosted trees on the
numbers; regression: ridge on the (log) target, alpha by RidgeCV's leave-one-out on train."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .datasets import Dataset
from .features import Block, build_blocks, unit_rows
from .metrics import Row, aligned, dataset_primary, score

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
ALPHA_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
BLOCK_LABELS = {"text": "TF-IDF word 1-2 + char 2-5 grams", "image": "grey 32x32 pixels", "audio": "MFCC mean/std",
                "video": "grey 16x16 frame mean/std", "tabular": "tabular fields"}


def _select(fit: Callable[[float], Any], grid: tuple[float, ...], val_score: Callable[[Any], float]) -> tuple[Any, float]:
    """The model of ``grid`` best on validation (the first of ties)."""
    best, best_v, best_s = None, grid[0], -math.inf
    for v in grid:
        m = fit(v)
        s = val_score(m)
        if s > best_s:
            best, best_v, best_s = m, v, s
    return best, best_v


def classifier(x: Any, y: np.ndarray, tr: np.ndarray, va: np.ndarray,
               val_score: Callable[[Any, Any], float]) -> tuple[Any, float]:
    """Class-balanced logistic regression, C picked by ``val_score(model, validation features)``."""
    from sklearn.linear_model import LogisticRegression

    def fit(c: float) -> Any:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x[tr], y[tr])

    return _select(fit, C_GRID, lambda m: val_score(m, x[va]))


def regressor(x: Any, y: np.ndarray, tr: np.ndarray, va: np.ndarray) -> tuple[Any, float]:
    """Ridge regression, alpha picked by RidgeCV's leave-one-out on the train rows (what a
    ten-line script does; on houses it reproduces the data set's published reference)."""
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=ALPHA_GRID).fit(x[tr], y[tr])
    return model, float(model.alpha_)


@dataclass
class _Fit:
    """What every reference of one data set shares: the rows, the fitted target, the model kind."""

    ds: Dataset
    y: np.ndarray        # the label; the log target where the data set's target is logged
    clf: bool
    tr: np.ndarray
    va: np.ndarray
    te: np.ndarray

    @classmethod
    def of(cls, ds: Dataset) -> _Fit:
        """The fitting context of ``ds``."""
        clf = ds.target == "classification"
        y = np.log(ds.y) if not clf and ds.log_target else ds.y
        return cls(ds, y, clf, ds.idx(0), ds.idx(1), ds.idx(2))

    @property
    def model_name(self) -> str:
        """The linear model's name in the method column."""
        return "logistic regression" if self.clf else "ridge"

    def scores(self, split: int, pred: np.ndarray, proba: np.ndarray | None = None) -> dict[str, float]:
        """Metrics of predictions (and class probabilities, in ``ds.classes``' order) on ``split``
        (regression ones back on the original scale)."""
        return score(self.ds, pred if self.clf else _back(self.ds, pred), split, proba)

    def model_scores(self, split: int, model: Any, x: Any) -> dict[str, float]:
        """A fitted model's metrics on ``split`` from its features ``x`` of that split's rows."""
        proba = aligned(model.predict_proba(x), list(model.classes_), self.ds.classes) if self.clf else None
        return self.scores(split, model.predict(x), proba)

    def row(self, name: str, x: Any, seconds: float) -> tuple[Row, Any]:
        """Fits the linear model on ``x``; its row (seconds: ``seconds`` + fitting) and model."""
        t0 = time.perf_counter()
        if self.clf:
            pick = dataset_primary(self.ds)[0]
            model, hp = classifier(x, self.y, self.tr, self.va, lambda m, xv: self.model_scores(1, m, xv)[pick])
        else:
            model, hp = regressor(x, self.y, self.tr, self.va)
        test = self.model_scores(2, model, x[self.te])
        return Row(name, "sklearn", test, seconds + time.perf_counter() - t0,
                   f"{'C' if self.clf else 'alpha'}={hp:g}", val=self.model_scores(1, model, x[self.va])), model


def _back(ds: Dataset, pred: np.ndarray) -> np.ndarray:
    """Predictions on the log target back on the original scale."""
    return np.exp(pred) if ds.log_target else pred


def fit_features(blocks: list[Block], tr: np.ndarray) -> dict[str, Any]:
    """Each block's feature matrix, fitted on the train rows (its seconds added to the block's)."""
    feats: dict[str, Any] = {}
    for b in blocks:
        t0 = time.perf_counter()
        feats[b.name] = b.make(tr)
        b.seconds += time.perf_counter() - t0
    return feats


def block_rows(fit: _Fit, blocks: list[Block], feats: dict[str, Any]) -> tuple[list[Row], dict[str, list[Any]], Any]:
    """One row per modality; each model's (val, test) outputs (probabilities or predictions)
    for late fusion, and the classes their probability columns stand for."""
    rows, per, classes = [], {}, None
    roles = fit.ds.roles
    for b in blocks:
        how = "joined" if b.name == "text" else "mean over"  # texts are joined (features._joined_text)
        extra = f", {how} {len(roles[b.name])} columns" if b.name in roles and len(roles[b.name]) > 1 else ""
        row, model = fit.row(f"{b.name}: {BLOCK_LABELS[b.name]}{extra} + {fit.model_name}", feats[b.name], b.seconds)
        rows.append(row)
        out = model.predict_proba if fit.clf else model.predict
        per[b.name] = [out(feats[b.name][i]) for i in (fit.va, fit.te)]
        classes = model.classes_ if fit.clf else classes
    return rows, per, classes


def trees_row(fit: _Fit) -> Row | None:
    """Gradient-boosted trees (scikit-learn's HistGradientBoosting, defaults, missing values as
    they are) on the numeric fields alone; classification only (none without numbers)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    cols = fit.ds.roles.get("numeric", [])
    if not fit.clf or not cols:
        return None
    t0 = time.perf_counter()
    x = fit.ds.df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    model = HistGradientBoostingClassifier(random_state=0).fit(x[fit.tr], fit.y[fit.tr])
    return Row("numbers: HistGradientBoosting (gradient-boosted trees, defaults)", "sklearn",
               fit.model_scores(2, model, x[fit.te]), time.perf_counter() - t0, "missing values as they are",
               val=fit.model_scores(1, model, x[fit.va]))


def early_fusion_row(fit: _Fit, blocks: list[Block], feats: dict[str, Any]) -> Row:
    """One model on every block, each scaled to unit row norm."""
    from scipy import sparse

    t0 = time.perf_counter()
    xs = [unit_rows(feats[b.name]) for b in blocks]
    x = sparse.hstack([sparse.csr_matrix(m) if not sparse.issparse(m) else m for m in xs]).tocsr() \
        if any(sparse.issparse(m) for m in xs) else np.hstack(xs)
    return fit.row("early fusion: all blocks (each scaled to unit row norm) + " + fit.model_name, x,
                   sum(b.seconds for b in blocks) + time.perf_counter() - t0)[0]


def late_fusion_row(fit: _Fit, per: dict[str, list[Any]], classes: Any, seconds: float) -> Row:
    """The mean of the per-modality probabilities (or predictions) of the models above."""
    means = [np.mean([outs[k] for outs in per.values()], axis=0) for k in (0, 1)]
    val_pred, pred = [classes[m.argmax(axis=1)] if fit.clf else m for m in means]
    val_p, test_p = [aligned(m, list(classes), fit.ds.classes) if fit.clf else None for m in means]
    return Row("late fusion: mean of the per-modality " + ("probabilities" if fit.clf else "predictions"),
               "sklearn", fit.scores(2, pred, test_p), seconds, "the models above", val=fit.scores(1, val_pred, val_p))


def trivial_row(fit: _Fit) -> Row:
    """The majority class, or the train mean (of the log target)."""
    t0 = time.perf_counter()
    n_te, n_va = len(fit.te), len(fit.va)
    if fit.clf:
        values, counts = np.unique(fit.y[fit.tr], return_counts=True)
        const = values[counts.argmax()]
        prior = aligned(counts[None, :] / counts.sum(), list(values), fit.ds.classes)  # the train frequencies
        return Row("majority class", "sklearn",
                   fit.scores(2, np.full(n_te, const, dtype=object), prior.repeat(n_te, 0)),
                   time.perf_counter() - t0, f"always {const!r}; probabilities: the train frequencies",
                   val=fit.scores(1, np.full(n_va, const, dtype=object), prior.repeat(n_va, 0)))
    mean = float(np.mean(fit.y[fit.tr]))
    return Row("train mean" + (" of the log target" if fit.ds.log_target else ""), "sklearn",
               fit.scores(2, np.full(n_te, mean)), time.perf_counter() - t0, val=fit.scores(1, np.full(n_va, mean)))


def sklearn_rows(ds: Dataset) -> list[Row]:
    """The scikit-learn references: each modality alone, early and late fusion, the trivial
    baseline; every row's seconds include extracting the features it uses."""
    from scipy.linalg import LinAlgWarning
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=LinAlgWarning)  # RidgeCV's small alphas on pixels
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    fit = _Fit.of(ds)
    blocks = build_blocks(ds)
    feats = fit_features(blocks, fit.tr)
    rows, per, classes = block_rows(fit, blocks, feats)
    if len(blocks) > 1:
        late_seconds = sum(r.seconds for r in rows)
        rows.append(early_fusion_row(fit, blocks, feats))
        rows.append(late_fusion_row(fit, per, classes, late_seconds))
    trees = trees_row(fit)
    rows.extend([trees] if trees else [])
    rows.append(trivial_row(fit))
    return rows

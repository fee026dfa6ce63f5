"""Fitting the members over one feature row (``autofusion.models.trees``): LightGBM with early
stopping on the validation rows and a small tuning loop over its hyper-parameters, and the
linear member at a few strengths, each ranked by the search's own validation metric, like any
trial. No Ray, no MLflow (the search stage, ``autofusion.search.trees``, logs them)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autofusion.data.prepare import PreparedData
from autofusion.data.rows import trial_inputs
from autofusion.data.splits import TRAIN, VAL
from autofusion.metrics import better
from autofusion.models.extractors import rows
from autofusion.models.linear import LINEAR, LinearBooster
from autofusion.models.trees import Block, TreeFeatures, TreeModel
from autofusion.train.metrics import output_metrics

ROUNDS = 2000  # boosting rounds at most; early stopping ends them sooner
LINEAR_C = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # the linear member's strengths (C), strongest first
LINEAR_ITERATIONS = 1000  # lbfgs's iterations at most per fit
STOP_AFTER = 50  # rounds without a better validation loss
EMBEDDING = "pooled"  # the frozen outputs a row member reads of a pretrained encoder: its pooled vector
# LightGBM's defaults first (AutoGluon's first tree model), then configurations sampled
# around them: leaves, learning rate, rows per leaf, feature and row subsampling, L2.
FIRST = {"num_leaves": 31, "learning_rate": 0.05, "min_data_in_leaf": 20, "feature_fraction": 0.9,
         "bagging_fraction": 1.0, "lambda_l2": 1e-3, "balanced": False}


@dataclass
class TreeFit:
    """One fitted configuration: the model, its validation outputs and metrics."""

    model: TreeModel
    params: dict[str, Any]
    val_outputs: np.ndarray  # what an ensemble averages: probabilities, or regression outputs
    val_metrics: dict[str, float]
    rounds: int
    seconds: float


@dataclass
class TreeSearch:
    """The tuning loop's result: the best configuration on the search metric, and every one tried."""

    best: TreeFit | None
    tried: list[dict[str, Any]] = field(default_factory=list)  # params, rounds, value, seconds


def tree_blocks(data: PreparedData) -> list[Block]:
    """The blocks the row members can read: the tabular fields; each input's first fitted
    extractor that gives a flat array (TF-IDF, pixel or MFCC statistics); and each input's
    pooled embedding by the first frozen pretrained encoder whose outputs the search cached
    (one per input: a member's embeddings and its served backbones are kept by input). Text
    fields one by one, never their joined input."""
    meta = data.meta
    blocks = []
    for spec in trial_inputs(meta.input_specs):
        if spec.modality == "tabular":
            prep = meta.prep["tabular"]
            blocks.append(Block(spec.name, None, numeric=len(prep["numeric"]), categories=len(prep["categorical"])))
            continue
        mine = [(key, ex, data.features.get(f"{spec.name}|{key}", {})) for key, ex in data.extractors.items()
                if ex.modality == spec.modality]
        flat = next((key for key, ex, arrays in mine if type(ex).outputs == ("x",) and "x" in arrays
                     and len(arrays["x"].shape) == 2), None)
        embedded = next((key for key, ex, arrays in mine if EMBEDDING in type(ex).outputs and EMBEDDING in arrays),
                        None)
        blocks += [Block(spec.name, flat)] if flat is not None else []
        blocks += [Block(spec.name, embedded, output=EMBEDDING)] if embedded is not None else []
    return blocks


def block_columns(data: PreparedData, blocks: list[Block], idx: np.ndarray) -> dict[str, Any]:
    """Each block's columns (before reduction) for the rows ``idx`` of the prepared data, by block id."""
    out = {}
    for b in blocks:
        if b.key is None:
            out[b.id] = b.columns(data.arrays[b.input][idx])
            continue
        x = data.features[f"{b.input}|{b.key}"][b.output][idx]
        x = x if hasattr(x, "tocsr") else rows({b.output: x}, np.arange(len(idx)))[b.output]
        out[b.id] = b.columns(x)
    return out


def lgb_params(params: dict[str, Any], target: str, num_classes: int, seed: int, threads: int) -> dict[str, Any]:
    """LightGBM's parameters for one configuration of ours."""
    objective = {"regression": ("regression", "l2")}.get(
        target, ("binary", "binary_logloss") if num_classes == 2 else ("multiclass", "multi_logloss"))
    out = {k: v for k, v in params.items() if k not in ("balanced", "inputs")}
    out.update(objective=objective[0], metric=objective[1], seed=seed, num_threads=threads, verbosity=-1,
               deterministic=True, force_col_wise=True, bagging_freq=1 if params["bagging_fraction"] < 1 else 0,
               min_data_in_bin=1, feature_pre_filter=False)
    if objective[0] == "multiclass":
        out["num_class"] = num_classes
    return out


@dataclass
class TreeData:
    """The feature rows of the training and validation splits, made once for every configuration."""

    features: TreeFeatures
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @classmethod
    def of(cls, data: PreparedData, seed: int = 0, inputs: str = "all", linear: bool = False,
           features: TreeFeatures | None = None) -> "TreeData":
        """The rows of every block (``inputs="all"``), of the tabular fields alone
        (``fields``), or of one modality's inputs (``text``); in the linear member's layout
        with ``linear``; through ``features`` when given (fitted already: bagging's folds
        share one), else through features fitted on the training rows."""
        tr, va = data.indices(TRAIN), data.indices(VAL)
        fitted = features is not None
        features = features if fitted else _layout(data, inputs, linear)
        blocks = features.blocks
        train = block_columns(data, blocks, tr)
        if not fitted:
            features.fit(train, seed=seed)
        target = data.meta.target
        return cls(features, features.matrix(train), _labels(data.targets[tr], target),
                   features.matrix(block_columns(data, blocks, va)), _labels(data.targets[va], target))


def fit_trees(data: PreparedData, td: TreeData, params: dict[str, Any], *, seed: int = 0,
              threads: int = 1) -> TreeFit:
    """Fits one configuration on the training rows, stopping on the validation rows' loss."""
    import lightgbm as lgb

    t0 = time.perf_counter()
    meta = data.meta
    k = len(meta.classes)
    weight = _balanced(td.y_train, k) if params.get("balanced") and meta.target == "classification" else None
    cats = td.features.categorical()
    train_set = lgb.Dataset(td.x_train, td.y_train, weight=weight, categorical_feature=cats, free_raw_data=False)
    val_set = lgb.Dataset(td.x_val, td.y_val, categorical_feature=cats, reference=train_set)
    booster = lgb.train(lgb_params(params, meta.target, k, seed, threads), train_set, num_boost_round=ROUNDS,
                        valid_sets=[val_set], callbacks=[lgb.early_stopping(STOP_AFTER, verbose=False)])
    model = TreeModel(booster, td.features, meta.target, k, dict(params))
    return _scored(data, td, model, int(booster.best_iteration or ROUNDS), t0)


def fit_linear(data: PreparedData, td: TreeData, params: dict[str, Any]) -> TreeFit:
    """Fits the linear member (``params["C"]``: the inverse regularisation; ridge's alpha is
    its inverse) on the training rows of ``td`` (its linear layout)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge

    t0 = time.perf_counter()
    meta = data.meta
    if meta.target == "regression":
        est = Ridge(alpha=1.0 / params["C"]).fit(td.x_train, td.y_train)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = LogisticRegression(C=params["C"], class_weight="balanced", max_iter=LINEAR_ITERATIONS)
            est.fit(td.x_train, td.y_train)
    model = TreeModel(LinearBooster.of(est, len(meta.classes)), td.features, meta.target, len(meta.classes),
                      dict(params))
    return _scored(data, td, model, 1, t0)


def _scored(data: PreparedData, td: TreeData, model: TreeModel, rounds: int, t0: float) -> TreeFit:
    """A fitted model with its validation outputs and metrics."""
    meta = data.meta
    out = torch.from_numpy(model.predict(td.x_val))
    val = output_metrics(out, torch.from_numpy(data.targets[data.indices(VAL)]), meta, prefix="val")
    probs = torch.softmax(out, dim=-1).numpy() if meta.target == "classification" else out.numpy()
    return TreeFit(model, dict(model.params), probs.astype(np.float32), val, rounds, time.perf_counter() - t0)


def _reads(data: PreparedData, block: Block, inputs: str) -> bool:
    """Whether a member reading ``inputs`` (``all``, ``fields``, a modality) reads ``block``."""
    if inputs in ("all", "fields"):
        return inputs == "all" or block.key is None
    return _modality(data, block) == inputs


def _modality(data: PreparedData, block: Block) -> str:
    """The modality of the input a block reads."""
    return next(s.modality for s in data.meta.input_specs if s.name == block.input)


def linear_inputs(data: PreparedData) -> list[str]:
    """What the linear members read: every input, then each modality alone when there are
    several (on memes the text alone is the strongest linear model; the image's columns only
    add noise to it), so that bagging's out-of-fold weights can choose between them."""
    blocks = tree_blocks(data) if data.meta.target != "multilabel" else []
    modalities = list(dict.fromkeys(_modality(data, b) for b in blocks))
    return ["all", *modalities] if len(modalities) > 1 else ["all"] if blocks else []


def fit_features(data: PreparedData, rows: np.ndarray, seed: int = 0, inputs: str = "all",
                 linear: bool = False) -> TreeFeatures:
    """The feature layout of a member over ``inputs`` (its SVD, or the linear layout's widths
    and scales) fitted on ``rows``: no labels are read."""
    features = _layout(data, inputs, linear)
    features.fit(block_columns(data, features.blocks, rows), seed=seed)
    return features


def _layout(data: PreparedData, inputs: str, linear: bool) -> TreeFeatures:
    """The member's blocks over ``inputs``, not fitted yet."""
    return TreeFeatures([b for b in tree_blocks(data) if _reads(data, b, inputs)], linear=linear)


def refit(data: PreparedData, params: dict[str, Any], *, seed: int = 0, threads: int = 1,
          features: TreeFeatures | None = None) -> TreeFit:
    """One tuned configuration of either member fitted again (on a fold's rows, by bagging),
    through ``features`` when given (see :meth:`TreeData.of`)."""
    inputs = params.get("inputs", "all")
    if params.get("model") == LINEAR:
        return fit_linear(data, TreeData.of(data, seed, inputs, linear=True, features=features), params)
    return fit_trees(data, TreeData.of(data, seed, inputs, features=features), params, seed=seed, threads=threads)


def tune_linear(data: PreparedData, metric: str, mode: str, *, seed: int = 0, seconds: float = math.inf,
                inputs: str = "all") -> TreeSearch:
    """The linear member over ``inputs`` (``all``, or a modality of :func:`linear_inputs`) at
    the strengths of ``LINEAR_C``, strongest regularisation (the fastest fit) first, until all
    are done or ``seconds`` have passed; the best on the validation ``metric`` wins (the lower
    validation loss breaks ties). Nothing when no input has features it can read, or the
    target is multi-label."""
    if inputs not in linear_inputs(data) or (
            len(np.unique(data.targets[data.indices(TRAIN)])) < 2 <= len(data.meta.classes)):
        return TreeSearch(None)
    td = TreeData.of(data, seed, inputs, linear=True)
    best: TreeFit | None = None
    tried: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for c in LINEAR_C:
        if tried and time.perf_counter() - t0 > seconds:
            break
        fit = fit_linear(data, td, {"model": LINEAR, "inputs": inputs, "C": c})
        value = fit.val_metrics.get(metric, math.nan)
        tried.append({**fit.params, metric: value, "seconds": round(fit.seconds, 2)})
        if best is None or _better(fit, best, metric, mode):
            best = fit
    return TreeSearch(best, tried)


def _labels(y: np.ndarray, target: str) -> np.ndarray:
    return y.reshape(-1).astype(np.float64) if target == "regression" else y.astype(np.int64)


def _balanced(y: np.ndarray, k: int) -> np.ndarray:
    """Per-row weights inverse to the class's training frequency (scikit-learn's ``balanced``)."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return (len(y) / (k * np.maximum(counts, 1)))[y]


def tune_trees(data: PreparedData, metric: str, mode: str, *, configs: int = 12, seconds: float = 120.0,
               seed: int = 0, threads: int = 1) -> TreeSearch:
    """Fits LightGBM's defaults, then configurations Optuna's TPE samples, until ``configs``
    are done or ``seconds`` have passed; the best on the validation ``metric`` wins (the
    lower validation loss breaks ties). Nothing when no input has features the trees can
    read, or the target is multi-label."""
    import optuna

    blocks = tree_blocks(data) if data.meta.target != "multilabel" else []
    if not blocks:
        return TreeSearch(None)
    # the fields alone, as well as every input, when there are both: on a few hundred rows
    # more columns can cost trees more than they tell them (imdb: numbers alone 0.839 test
    # ROC-AUC, numbers + 4 text fields' features 0.823-0.838)
    variants = {"all": TreeData.of(data, seed)}
    if any(b.key is None for b in blocks) and any(b.key is not None for b in blocks):
        variants["fields"] = TreeData.of(data, seed, "fields")
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize", sampler=sampler)
    for name in variants:  # LightGBM's defaults on each
        first = {k: v for k, v in FIRST.items() if k != "balanced" or data.meta.target == "classification"}
        study.enqueue_trial({**first, **({"inputs": name} if len(variants) > 1 else {})})
    best: TreeFit | None = None
    tried: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for _ in range(configs):
        if len(tried) >= len(variants) and time.perf_counter() - t0 > seconds:  # LightGBM's defaults first
            break
        trial = study.ask()
        params = _suggest(trial, data.meta.target, list(variants))
        fit = fit_trees(data, variants[params["inputs"]], params, seed=seed, threads=threads)
        value = fit.val_metrics.get(metric, math.nan)
        if math.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        tried.append({**params, "rounds": fit.rounds, metric: value, "seconds": round(fit.seconds, 2)})
        if best is None or _better(fit, best, metric, mode):
            best = fit
    return TreeSearch(best, tried)


def _suggest(trial: Any, target: str, inputs: list[str]) -> dict[str, Any]:
    params = {
        "inputs": trial.suggest_categorical("inputs", inputs) if len(inputs) > 1 else inputs[0],
        "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 3, 50, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.3, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }
    if target == "classification":
        params["balanced"] = trial.suggest_categorical("balanced", [False, True])
    return params


def _better(a: TreeFit, b: TreeFit, metric: str, mode: str) -> bool:
    va, vb = a.val_metrics.get(metric, math.nan), b.val_metrics.get(metric, math.nan)
    if not math.isfinite(va):
        return False
    if not math.isfinite(vb) or va != vb:
        return better(va, vb if math.isfinite(vb) else None, mode)
    return a.val_metrics.get("val_loss", math.inf) < b.val_metrics.get("val_loss", math.inf)

"""Bagging's folds (AutoGluon's k-fold bagging): the training and validation rows pooled and
cut into k folds; one model of a configuration per fold, trained on the other folds and
stopped on its own, as a trial is trained and stopped on the validation rows (the same
hooks, seed and early stopping: ``search.trainable``); its outputs on its fold are the
configuration's out-of-fold outputs there. No MLflow; ``search.bagging`` runs the folds (as
Ray tasks) and logs the result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from autofusion.data.prepare import PreparedData
from autofusion.data.splits import TEST, TRAIN, VAL
from autofusion.metrics import better
from autofusion.models.build import build_model
from autofusion.search.ensemble import probabilities
from autofusion.search.trainable import TrialSettings, trial_seed
from autofusion.train.batches import pick_device
from autofusion.train.hooks import hooks_for
from autofusion.train.loop import fit, predict
from autofusion.trial import TrialConfig


def fold_splits(data: PreparedData, k: int, seed: int) -> list[np.ndarray]:
    """``k`` split arrays over the data's rows: in the ``j``-th, fold ``j`` of the training and
    validation rows is the validation split, the other folds the training split, and the test
    rows stay test. Folds are stratified by class (classification), and keep each group whole
    when the data has groups."""
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        StratifiedGroupKFold,
        StratifiedKFold,
    )

    pool = np.flatnonzero(data.split != TEST)
    y = data.targets[pool]
    classes = data.meta.target == "classification"
    groups = None if data.groups is None else data.groups[pool]
    if groups is not None:
        cv = StratifiedGroupKFold(k, shuffle=True, random_state=seed) if classes else GroupKFold(k)
    else:
        cv = StratifiedKFold(k, shuffle=True, random_state=seed) if classes else KFold(k, shuffle=True,
                                                                                          random_state=seed)
    out = []
    for _, held in cv.split(pool, y if classes else None, groups):
        split = np.where(data.split == TEST, TEST, TRAIN).astype(np.int8)
        split[pool[held]] = VAL
        out.append(split)
    return out


@dataclass
class FoldFit:
    """One configuration trained on one fold's training rows."""

    state: dict[str, Any]  # the best epoch's weights (CPU tensors)
    outputs: np.ndarray  # probabilities (or regression outputs) on the fold's held-out rows
    epochs: int
    best_epoch: int


def fit_fold(config: dict[str, Any], data: PreparedData, split: np.ndarray, ts: TrialSettings) -> FoldFit:
    """Trains ``config`` (a trial's flat parameters) on ``split``'s training rows as a trial
    trains (its hooks, its early stopping on the validation metric, its seed), keeping the best
    epoch's weights; returns them and the held-out rows' outputs."""
    import torch

    torch.set_num_threads(ts.threads)
    fold = dataclasses.replace(data, split=split)
    seed = trial_seed(config, ts.seed)
    torch.manual_seed(seed)
    tc = TrialConfig.from_flat(config, ts.modalities, ts.max_epochs)
    model = build_model(tc, data.meta, layout="start")
    device = pick_device()
    best: dict[str, Any] = {"value": None, "state": None, "epoch": 0}

    def on_epoch_end(epoch: int, metrics: dict[str, float], m: Any) -> None:
        value = metrics.get(ts.metric)
        if better(value, best["value"], ts.mode):
            best.update(value=value, epoch=epoch, state={k: v.detach().cpu().clone() for k, v in m.state_dict().items()})

    history = fit(model, fold, tc, device=device, seed=seed, on_epoch_end=on_epoch_end,
                  hooks=hooks_for(tc, fold, metric=ts.metric, mode=ts.mode))
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    out, _ = predict(model, fold, fold.indices(VAL), device)
    state = best["state"] or {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return FoldFit(state, probabilities(out, data.meta.target), len(history), best["epoch"] or len(history))

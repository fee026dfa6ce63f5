"""k-fold bagging of the search's model on small data (AutoGluon's bagging).

On a few hundred rows the validation split cannot tell the trials apart (the memes analysis:
validation and test rank them differently), and a model never sees the rows it is chosen on.
Bagging refits the configurations the search chose (the greedy ensemble's members, heaviest
first, or the best trial) on the training and validation rows pooled: for each of ``k``
folds, one model trained on the other folds and stopped on its own (``search.folds``; the
trees member's folds on the driver). Each configuration's out-of-fold outputs cover every
pooled row once, and greedy selection on them (``search.ensemble``) weighs the configurations;
the bagged model is the weighted average of all their fold models (each configuration's weight
shared by its k models), tested once and logged as one ensemble pyfunc in the search's run:
it is then the search's model.

``search.bagging: auto`` (the default) bags with ``FOLDS`` folds when the training and
validation rows are at most ``AUTO_ROWS`` and the search has one objective, within a budget
(:func:`budget_of`: the networks' folds take about the trials' own wall time at most); ``0``
never, ``K`` always with K folds, every chosen configuration.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autofusion.data.splits import TEST, TRAIN, VAL
from autofusion.metrics import best_first
from autofusion.models.linear import LINEAR
from autofusion.models.trees import ROW_MODELS, TreeModel
from autofusion.search.ensemble import as_outputs, greedy_selection, metric_score
from autofusion.search.records import BaggedResult, TrialRecord
from autofusion.train.metrics import output_metrics

FOLDS = 5
AUTO_ROWS = 1000  # training + validation rows up to which ``auto`` bags (its validation split: ~150 rows)
MAX_CONFIGS = 3  # configurations bagged at most
BUDGET_SHARE = 1.0  # the networks' folds take about this share of the trials' wall time at most ...
MIN_BUDGET = 60.0  # ... or this many seconds, whichever is more; the heaviest configuration is always bagged
log = logging.getLogger(__name__)


def folds_for(settings: Any, rows: int) -> int:
    """The folds a search bags with: ``settings.bagging`` (-1: ``FOLDS`` up to ``AUTO_ROWS``
    pooled rows, else none); none for a multi-objective search."""
    if settings.objectives:
        return 0
    if settings.bagging == -1:
        return FOLDS if rows <= AUTO_ROWS else 0
    return settings.bagging


def fold_limit(data: Any) -> int | None:
    """The most folds the pooled rows allow: a class (classification) in every fold, so its
    rarest class's rows; None (no limit) for other targets."""
    if data.meta.target != "classification":
        return None
    counts = np.bincount(data.targets[data.split != TEST].astype(np.int64))
    return int(counts[counts > 0].min()) if (counts > 0).any() else 0


def chosen(trials: list[TrialRecord], best: TrialRecord, ensemble: Any) -> list[TrialRecord]:
    """The configurations to bag: the greedy ensemble's members, most weight first (kept or
    not: its picks are the trials that help each other most), else the best trial; at most
    ``MAX_CONFIGS``. Then the members over a feature row (LightGBM, linear), whatever the
    ensemble picked: their folds take seconds on the driver, and the out-of-fold selection
    over every pooled row, not the ensemble's ~150 validation rows, judges whether they help.
    (Counting only the networks against ``MAX_CONFIGS``, so that a row member cannot take a
    network's place, was measured and left: BENCHMARKS.md, imdb.)"""
    numbers = list(ensemble.trials) if ensemble is not None else [best.number]
    by_number = {t.number: t for t in trials}
    picked = [by_number[n] for n in numbers if n in by_number][:MAX_CONFIGS] or [best]
    rows = [t for t in trials if t.kind in ROW_MODELS and t.status == "finished" and t not in picked]
    return picked + rows


def within_budget(configs: list[TrialRecord], k: int, slots: int, budget: float,
                  scale: float = 1.0) -> tuple[list[TrialRecord], list[str]]:
    """The configurations whose folds fit ``budget`` seconds, in order, and a line for each
    left out. A network's ``k`` folds are estimated from its trial's seconds (times ``scale``,
    the folds' training rows over the trial's), ``slots`` of them at once; the first
    configuration (the heaviest) is always kept, and a row member costs nothing here (its folds
    take seconds on the driver)."""
    kept, left, spent = [], [], 0.0
    for c in configs:
        cost = 0.0 if c.kind in ROW_MODELS else c.seconds * scale * k / max(1, slots)
        if not kept or c.kind in ROW_MODELS or spent + cost <= budget:
            kept.append(c)
            spent += cost
        else:
            left.append(f"trial {c.number}: its {k} folds would take about {cost:.0f}s, over bagging's "
                        f"budget of {budget:.0f}s (the trials' time)")
    return kept, left


def budget_of(ctx: Any, configs: list[TrialRecord], k: int) -> tuple[list[TrialRecord], list[str]]:
    """:func:`within_budget` for this search: the trials' wall time (at least ``MIN_BUDGET``),
    its trials at once, and the folds' training rows over the training split's. No budget
    where the user asked for bagging by its folds (``--bagging K``): every configuration."""
    if ctx.settings.bagging != -1:
        return configs, []
    data = ctx.data
    budget = max(MIN_BUDGET, BUDGET_SHARE * ctx.phases.seconds.get("trials", 0.0))
    pooled, train = int((data.split != TEST).sum()), max(1, len(data.indices(TRAIN)))
    return within_budget(configs, k, int(ctx.settings.concurrency), budget, pooled * (k - 1) / k / train)


def run_bagging(ctx: Any, configs: list[TrialRecord], k: int,
                dropped: list[str] | None = None) -> tuple[BaggedResult, list[Any]] | None:
    """Bags ``configs`` with ``k`` folds; the result (without test metrics and model yet) and
    its fold models as ensemble members (``serving.ensemble.Member``), or None when no
    configuration could be bagged. ``dropped``: lines for configurations already left out."""
    from autofusion.search.folds import fold_splits

    t0 = time.perf_counter()
    data, s = ctx.data, ctx.settings
    splits = fold_splits(data, k, s.seed)
    pool = np.flatnonzero(data.split != TEST)
    fits: dict[int, list[tuple[Any, np.ndarray]]] = {}  # trial number -> per fold: (model, outputs)
    dropped = list(dropped or [])
    neural = [c for c in configs if c.kind not in ROW_MODELS]
    if neural:
        fits.update(_neural_folds(ctx, neural, splits, dropped))
    for c in (c for c in configs if c.kind in ROW_MODELS):
        fits[c.number] = _tree_folds(ctx, c, splits)
    if not fits:
        return None
    oof = {n: _out_of_fold(pool, splits, per) for n, per in fits.items()}
    order = sorted(oof, key=lambda n: [c.number for c in configs].index(n))
    y = torch.from_numpy(data.targets[pool])
    score = metric_score(y, data, s.metric, s.mode)
    sel = greedy_selection([oof[n] for n in order], score)
    weights = {order[i]: w for i, w in sel.weights.items()}
    picked = sorted(weights, key=lambda n: -weights[n])
    avg = sum(weights[n] * oof[n] for n in picked)
    metrics = output_metrics(as_outputs(avg, data.meta.target), y, data.meta, prefix="val")
    by_number = {c.number: c for c in configs}
    res = BaggedResult(folds=k, rows=len(pool), trials=picked, run_ids=[by_number[n].run_id for n in picked],
                       weights=[weights[n] for n in picked], oof_metrics=metrics, dropped=dropped,
                       oof_values=_each(oof, score, s.mode))
    members = [(model, by_number[n], weights[n] / len(fits[n])) for n in picked for model, _ in fits[n]]
    res.seconds = time.perf_counter() - t0
    return res, members


def _each(oof: dict[int, np.ndarray], score: Any, mode: str) -> dict[int, float]:
    """Each configuration's own out-of-fold metric over the pooled rows (``score``: the
    selection's, ``ensemble.metric_score``), best first."""
    regrets = {n: score(o)[0] for n, o in oof.items()}
    ranked = sorted(regrets.items(), key=lambda kv: (not np.isfinite(kv[1]), kv[1], kv[0]))
    return {n: best_first(r, mode) for n, r in ranked}  # a regret back to the metric's value


def _out_of_fold(pool: np.ndarray, splits: list[np.ndarray], per_fold: list[tuple[Any, np.ndarray]]) -> np.ndarray:
    """One configuration's outputs on every pooled row, each from the fold model that did not see it."""
    out = None
    where = {row: i for i, row in enumerate(pool)}
    for split, (_, outputs) in zip(splits, per_fold):
        held = np.flatnonzero(split == VAL)
        if out is None:
            out = np.zeros((len(pool), *outputs.shape[1:]), dtype=np.float64)
        out[[where[r] for r in held]] = outputs
    return out


def _neural_folds(ctx: Any, configs: list[TrialRecord], splits: list[np.ndarray],
                  dropped: list[str]) -> dict[int, list[tuple[Any, np.ndarray]]]:
    """Every neural configuration's fold models, trained as Ray tasks with a trial's resources."""
    import ray

    from autofusion.models.build import build_model
    from autofusion.search.folds import fit_fold
    from autofusion.search.trainable import TrialSettings
    from autofusion.trial import TrialConfig

    s, data = ctx.settings, ctx.data
    ts = TrialSettings(data.meta.modalities, s.max_epochs, s.metric, s.mode, s.seed, max(1, int(s.cpus_per_trial)))
    task = ray.remote(num_cpus=s.cpus_per_trial, num_gpus=s.gpus_per_trial or 0, max_retries=0)(fit_fold)
    ref = ray.put(data)
    futures = {c.number: [task.remote(c.config, ref, split, ts) for split in splits] for c in configs}
    out: dict[int, list[tuple[Any, np.ndarray]]] = {}
    for c in configs:
        try:
            folds = ray.get(futures[c.number])
        except Exception as exc:  # noqa: BLE001 - a configuration that fails on a fold is left out
            dropped.append(f"trial {c.number}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            log.warning("bagging left trial %s out: %s", c.number, exc)
            continue
        tc = TrialConfig.from_flat(c.config, data.meta.modalities, s.max_epochs)
        models = []
        for f in folds:
            model = build_model(tc, data.meta)
            model.load_state_dict(f.state)
            models.append((model.eval(), f.outputs.astype(np.float64)))
        out[c.number] = models
    return out


def _tree_folds(ctx: Any, rec: TrialRecord, splits: list[np.ndarray]) -> list[tuple[Any, np.ndarray]]:
    """A row member's fold models, fitted on the driver with its tuned parameters, all through
    one feature layout fitted on the pooled rows (unsupervised, as the TF-IDF before it): the
    bagged model then holds one copy of its SVD components, not one per fold."""
    from autofusion.search.trees import tree_threads
    from autofusion.train.trees import fit_features, refit

    params = TreeModel.load(Path(rec.checkpoint)).params
    pooled = fit_features(ctx.data, np.flatnonzero(ctx.data.split != TEST), ctx.settings.seed,
                          params.get("inputs", "all"), params.get("model") == LINEAR)
    out = []
    for split in splits:
        fold = dataclasses.replace(ctx.data, split=split)
        fit = refit(fold, params, seed=ctx.settings.seed, threads=tree_threads(int((split != TEST).sum())),
                    features=pooled)
        out.append((fit.model, fit.val_outputs.astype(np.float64)))
    return out


def bag_and_log(ctx: Any, trials: list[TrialRecord], best: TrialRecord,
                ensemble: Any) -> tuple[BaggedResult | None, np.ndarray | None]:
    """Bags the chosen configurations when the search's settings and data size say so, tests
    the bagged model once and logs it (``bagged``) in the search's run; the result and its test
    confusion matrix (classification), or (None, None) when it does not bag."""
    from dataclasses import replace

    from autofusion.search import evaluate
    from autofusion.serving.ensemble import Member, log_ensemble_model
    from autofusion.trial import TrialConfig

    k = folds_for(ctx.settings, int((ctx.data.split != TEST).sum()))
    limit = fold_limit(ctx.data)
    k = k if limit is None else min(k, limit)
    if k < 2:  # none asked, or a class too rare to be in two folds
        return None, None
    configs, left = budget_of(ctx, chosen(trials, best, ensemble), k)
    done = run_bagging(ctx, configs, k, left)
    if done is None:
        return None, None
    res, fold_models = done
    members = []
    for model, rec, weight in fold_models:
        tc = None if rec.kind in ROW_MODELS else TrialConfig.from_flat(rec.config, ctx.data.meta.modalities)
        if tc is not None:
            tc = replace(tc, epochs=rec.planned_epochs or tc.epochs)
        members.append(Member(model, tc, weight, rec.number, rec.run_id))
    res.test_metrics, matrix = evaluate.ensemble_test_evaluation([m.model for m in members],
                                                                 [m.weight for m in members], ctx.data)
    res.model_uri = log_ensemble_model(ctx.uri, ctx.parent, members, ctx.data, name="bagged")
    return res, matrix

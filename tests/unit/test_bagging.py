"""k-fold bagging's parts: the folds (stratified, groups kept whole, test rows untouched), the
out-of-fold outputs assembled from the fold that did not see each row, one configuration
trained on a fold as a trial trains, the choice of configurations and of the folds by data
size."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from autofusion.data.splits import TEST, TRAIN, VAL
from autofusion.models.trees import KIND
from autofusion.search import bagging
from autofusion.search.bagging import FOLDS, _out_of_fold, chosen, folds_for
from autofusion.search.folds import fit_fold, fold_splits
from autofusion.search.records import EnsembleResult, Settings, TrialRecord
from autofusion.search.trainable import TrialSettings
from tests.helpers import fake_data, flat_config


def test_folds_cover_the_pooled_rows_once_and_leave_test_alone():
    data = fake_data(["text"], n=60, classes=3)
    splits = fold_splits(data, 5, seed=0)
    pool = data.split != TEST
    held = np.stack([s == VAL for s in splits])
    assert held[:, pool].sum(axis=0).tolist() == [1] * int(pool.sum())  # each pooled row held out once
    for s in splits:
        assert (s[~pool] == TEST).all() and set(s[pool]) == {TRAIN, VAL}
        assert len(set(data.targets[s == VAL])) == 3  # stratified: every class in every fold


def test_folds_keep_a_group_whole():
    data = fake_data(["text"], n=60, classes=2)
    data = dataclasses.replace(data, groups=np.arange(60) // 4)  # 15 groups of 4 rows
    splits = fold_splits(data, 3, seed=1)
    assert len(splits) == 3
    for s in splits:
        for g in range(15):
            rows = (data.groups == g) & (data.split != TEST)
            assert len(set(s[rows])) <= 1


def test_out_of_fold_outputs_come_from_the_model_that_did_not_see_the_row():
    data = fake_data(["text"], n=40, classes=2)
    splits = fold_splits(data, 4, seed=0)
    assert len(splits) == 4
    pool = np.flatnonzero(data.split != TEST)
    per = [(None, np.full((int((s == VAL).sum()), 2), j, dtype=np.float64)) for j, s in enumerate(splits)]
    oof = _out_of_fold(pool, splits, per)
    for j, s in enumerate(splits):
        rows = np.isin(pool, np.flatnonzero(s == VAL))
        assert (oof[rows] == j).all()


def test_a_fold_trains_like_a_trial_and_gives_its_held_out_outputs():
    data = fake_data(["image", "text"], n=32, classes=2)
    split = fold_splits(data, 4, seed=0)[0]
    config = flat_config(["image", "text"], {"image": "small_cnn", "text": "embedding_bag"}, "mid",
                         **{"train.epochs": 2})
    ts = TrialSettings(["image", "text"], 2, "val_accuracy", "max", 0, 1)
    fit = fit_fold(config, data, split, ts)
    assert fit.outputs.shape == (int((split == VAL).sum()), 2)
    assert np.allclose(fit.outputs.sum(axis=1), 1.0, atol=1e-5) and 1 <= fit.best_epoch <= fit.epochs == 2
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in fit.state.values())


def _settings(**over) -> Settings:
    base = dict(num_trials=4, max_epochs=2, concurrency=2, seed=0, sampler="tpe", scheduler="fifo",
                metric="val_accuracy", mode="max", objectives=(), time_budget=None, cpus_per_trial=1.0,
                gpus_per_trial=0.0, grace_period=1)
    return Settings(**{**base, **over})


def test_the_folds_follow_the_setting_and_the_data_size(monkeypatch):
    monkeypatch.setattr(bagging, "AUTO_ROWS", 3000)  # the product's (the suite's conftest sets 0)
    assert folds_for(_settings(bagging=-1), 3000) == FOLDS
    assert folds_for(_settings(bagging=-1), 3001) == 0
    assert folds_for(_settings(bagging=0), 100) == 0 and folds_for(_settings(bagging=3), 10**6) == 3
    assert folds_for(_settings(bagging=5, objectives=("num_params",)), 100) == 0


def test_the_configurations_bagged_are_the_ensembles_heaviest():
    trials = [TrialRecord(str(n), n, {}) for n in range(1, 7)]
    ens = EnsembleResult(trials=[4, 2, 6, 1], run_ids=[None] * 4, weights=[0.4, 0.3, 0.2, 0.1], val_value=0.9,
                         best_val_value=0.8, kept=False, candidates=6, rounds=25)
    assert [t.number for t in chosen(trials, trials[3], ens)] == [4, 2, 6]
    assert [t.number for t in chosen(trials, trials[2], None)] == [3]
    trees = TrialRecord("trees-1", 7, {}, status="finished", kind=KIND)  # the trees member joins them
    assert [t.number for t in chosen([*trials, trees], trials[3], ens)] == [4, 2, 6, 7]
    ens7 = dataclasses.replace(ens, trials=[7, 4, 2, 6])  # once, where the ensemble picked it
    assert [t.number for t in chosen([*trials, trees], trials[3], ens7)] == [7, 4, 2]


def test_bagging_keeps_the_networks_whose_folds_fit_the_trials_time():
    """A network's folds are estimated from its trial (k folds, ``slots`` at once); one that
    would overrun the budget is left out with a line saying why, the next that fits is kept,
    the heaviest configuration is kept whatever it costs, and a row member costs nothing."""
    from autofusion.search.bagging import within_budget

    def net(n: int, seconds: float) -> TrialRecord:
        return TrialRecord(str(n), n, {}, status="finished", seconds=seconds)

    row = TrialRecord("r", 9, {}, status="finished", kind=KIND, seconds=500.0)
    configs = [net(1, 10.0), net(2, 80.0), row, net(3, 20.0)]
    kept, left = within_budget(configs, k=5, slots=2, budget=100.0)
    assert [c.number for c in kept] == [1, 9, 3]  # 25 s + 0 + 50 s; trial 2's 200 s does not fit
    assert left == ["trial 2: its 5 folds would take about 200s, over bagging's budget of 100s (the trials' time)"]
    kept, left = within_budget([net(2, 80.0), net(1, 10.0), row], k=5, slots=2, budget=120.0)
    assert [c.number for c in kept] == [2, 9] and len(left) == 1  # the heaviest, 200 s, is kept: the budget
    # is spent, and a row member is still bagged
    kept, _ = within_budget([net(2, 80.0), net(1, 10.0)], k=5, slots=2, budget=120.0, scale=0.5)
    assert [c.number for c in kept] == [2, 1]  # folds on half the trial's rows: 100 s + 12.5 s


def test_the_budget_holds_for_auto_bagging_and_not_where_the_user_named_the_folds():
    from types import SimpleNamespace

    from autofusion.phases import Phases
    from autofusion.search.bagging import MIN_BUDGET, budget_of

    data = fake_data(["image"], n=40)
    slow = [TrialRecord(str(n), n, {}, status="finished", seconds=MIN_BUDGET) for n in (1, 2)]
    phases = Phases()
    phases.seconds["trials"] = 10.0  # under the floor: the budget is MIN_BUDGET
    ctx = SimpleNamespace(data=data, phases=phases, settings=_settings(bagging=-1, concurrency=1))
    kept, left = budget_of(ctx, slow, FOLDS)
    assert [c.number for c in kept] == [1] and left[0].startswith("trial 2: its 5 folds would take about")
    ctx.settings = _settings(bagging=5, concurrency=1)
    assert budget_of(ctx, slow, FOLDS) == (slow, [])


def test_a_rare_class_limits_the_folds():
    """Stratified folds need each class in every fold: a class of 3 pooled rows allows 3 folds,
    one of a single row none (a tiny data set then goes without bagging, and says nothing of it)."""
    data = fake_data(["text"], n=60, classes=2)
    pool = np.flatnonzero(data.split != TEST)
    targets = data.targets.copy()
    targets[pool] = 0
    targets[pool[:3]] = 1
    assert bagging.fold_limit(dataclasses.replace(data, targets=targets)) == 3
    targets[pool[1:3]] = 0
    assert bagging.fold_limit(dataclasses.replace(data, targets=targets)) == 1
    assert bagging.fold_limit(fake_data(["text"], n=60, classes=2, target="regression")) is None

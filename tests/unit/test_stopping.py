"""Early stopping inside a trial (train/stopping.py): a trial stops once neither its validation
metric nor its validation loss improves for ``patience`` epochs, and the weights the trainable
keeps are the best epoch's (a converged trial is told to Optuna as finished: test_searcher.py)."""

from __future__ import annotations

import torch

from autofusion.models.build import build_model
from autofusion.train.hooks import hooks_for
from autofusion.train.loop import fit
from autofusion.train.stopping import EarlyStopping, stopping_hook
from autofusion.trial import TrialConfig
from tests.helpers import fake_data, flat_config


def _feed(stopper: EarlyStopping, values: list[tuple[float, float]]) -> list[bool]:
    return [stopper.observe(e, {"val_f1_macro": m, "val_loss": loss}) for e, (m, loss) in enumerate(values, start=1)]


def test_it_stops_after_patience_epochs_without_improvement():
    stopper = EarlyStopping(2, "val_f1_macro", "max")
    assert _feed(stopper, [(0.5, 1.0), (0.6, 0.9), (0.6, 0.95), (0.55, 1.1)]) == [False, False, False, True]
    assert stopper.stopped_epoch == 4 and stopper.best == {"val_f1_macro": 0.6, "val_loss": 0.9}


def test_a_falling_validation_loss_keeps_a_slow_learner_going():
    # A model still predicting the majority class: its score sits still while its loss falls.
    stopper = EarlyStopping(2, "val_f1_macro", "max")
    flat = [(0.38, 0.69 - 0.01 * e) for e in range(6)]
    assert _feed(stopper, flat) == [False] * 6
    assert _feed(EarlyStopping(2, "val_f1_macro", "max", loss=None), flat)[:3] == [False, False, True]


def test_the_decision_is_made_once_per_epoch():
    stopper = EarlyStopping(1, "val_rmse", "min", loss=None)
    assert stopper.observe(1, {"val_rmse": 3.0}) is False
    assert stopper.observe(2, {"val_rmse": 3.5}) is True
    assert stopper.observe(2, {"val_rmse": 1.0}) is True  # the trainable asked first; the hook agrees
    assert stopper.epoch_end(2, {"val_rmse": 1.0}, None) is True


def test_a_trial_with_patience_ends_before_its_epochs_and_keeps_its_best_epoch():
    data = fake_data(["image", "text"], n=32, classes=2)  # random labels: nothing to learn, it plateaus
    flat = flat_config(["image", "text"], {"image": "small_cnn", "text": "embedding_bag"}, "mid",
                       **{"encoder.image.small_cnn.width": 8, "encoder.text.embedding_bag.dim": 8,
                          "train.epochs": 40, "train.patience": 2, "optimizer.lr": 3e-2})
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    assert tc.patience == 2
    hooks = hooks_for(tc, data, metric="val_loss", mode="min")
    stopper = stopping_hook(hooks)
    assert stopper is not None
    torch.manual_seed(0)
    model = build_model(tc, data.meta)
    kept: dict = {}

    def keep(epoch: int, metrics: dict, m) -> None:  # what the trainable does: checkpoint on improvement
        if not kept or metrics["val_loss"] < kept["value"]:
            kept.update(value=metrics["val_loss"], epoch=epoch)

    history = fit(model, data, tc, device=torch.device("cpu"), on_epoch_end=keep, hooks=hooks)
    assert len(history) < 40 and stopper.stopped_epoch == len(history)
    best = min(range(len(history)), key=lambda i: history[i]["val_loss"]) + 1
    assert kept["epoch"] == best and len(history) - best <= 2  # the checkpoint is the best epoch's
    off = TrialConfig.from_flat({**flat, "train.patience": 0}, ["image", "text"])
    assert stopping_hook(hooks_for(off, data)) is None

"""How surely the validation split ranks the best trial: the paired bootstrap over saved
validation outputs (``search/noise.py``), on synthetic outputs whose answer is known."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from autofusion.search.ensemble import VAL_OUTPUTS, as_outputs, probabilities
from autofusion.search.noise import SLOW, resampled, validation_noise
from autofusion.search.records import SURE, Settings, TrialRecord
from autofusion.train.metrics import output_metrics
from tests.helpers import fake_data

SETTINGS = Settings(num_trials=3, max_epochs=2, concurrency=1, seed=0, sampler="tpe", scheduler="fifo",
                    metric="val_accuracy", mode="max", objectives=(), time_budget=None, cpus_per_trial=1,
                    gpus_per_trial=0, grace_period=1)


def _probs(pred: np.ndarray, k: int = 2) -> np.ndarray:
    p = np.full((len(pred), k), 0.1 / (k - 1))
    p[np.arange(len(pred)), pred] = 0.9
    return p


def _trials(folder: Path, outputs: list[np.ndarray | None], values: list[float]) -> list[TrialRecord]:
    trials = []
    for i, (p, v) in enumerate(zip(outputs, values), 1):
        ckpt = folder / f"ckpt{i}"
        ckpt.mkdir(parents=True)
        if p is not None:
            np.save(ckpt / VAL_OUTPUTS, p.astype(np.float32))
        trials.append(TrialRecord(f"t{i}", i, {"fusion.type": "mid"}, status="finished", best_value=v, best_epoch=1,
                                  checkpoint=str(ckpt)))
    return trials


@pytest.fixture(scope="module")
def data():
    return fake_data(["text"], n=240, classes=2)  # 60 validation rows, classes alternating


def _wrong_on(y: np.ndarray, rows: int) -> np.ndarray:
    pred = y.copy()
    pred[:rows] = 1 - pred[:rows]
    return pred


def test_a_lead_of_one_row_is_a_tie_and_a_lead_of_half_the_rows_is_not(tmp_path, data):
    y = data.targets[data.indices(1)]
    best, close, far = _probs(_wrong_on(y, 6)), _probs(_wrong_on(y, 7)), _probs(_wrong_on(y, 30))
    trials = _trials(tmp_path, [best, close, far], [54 / 60, 53 / 60, 30 / 60])
    n = validation_noise(trials, trials[0], data, SETTINGS)
    assert n.rows == 60 and n.compared == 2
    assert n.tied == [2]  # one row apart: the best wins on only some resamples
    assert n.shares[3] == pytest.approx(1.0) and 0.3 < n.shares[2] < SURE
    assert n.low < 54 / 60 < n.high and n.high - n.low > 0.05  # 60 rows: several points either way
    line = n.text("val_accuracy", 0.9)
    assert "60 validation rows" in line and "1 of the other 2 trials (trials 2) are not told apart" in line
    both = validation_noise(trials[:2], trials[0], data, SETTINGS)
    assert "none of the other 1 trials is told apart" in both.text("val_accuracy", 0.9)
    again = validation_noise(trials, trials[0], data, SETTINGS)
    assert again == n  # seeded


def test_a_clear_winner_is_told_apart_from_every_other_trial(tmp_path, data):
    y = data.targets[data.indices(1)]
    trials = _trials(tmp_path, [_probs(y), _probs(_wrong_on(y, 30)), _probs(1 - y)], [1.0, 0.5, 0.0])
    n = validation_noise(trials, trials[0], data, SETTINGS)
    assert n.tied == [] and n.compared == 2 and n.low == n.high == 1.0
    assert "beats each of the other 2 trials" in n.text("val_accuracy", 1.0)


def test_smaller_is_better_metrics_and_trials_without_outputs(tmp_path):
    data = fake_data(["text"], n=200, target="regression")
    y = data.targets[data.indices(1)]
    rng = np.random.default_rng(0)
    exact, noisy = y + rng.normal(0, 0.01, y.shape), y + rng.normal(0, 1.0, y.shape)
    trials = _trials(tmp_path, [exact, noisy, None], [0.01, 1.0, 2.0])
    settings = replace(SETTINGS, metric="val_rmse", mode="min")
    n = validation_noise(trials, trials[0], data, settings)
    assert n.compared == 1 and n.tied == [] and n.high < 0.05  # the trial without outputs is left out
    assert validation_noise(trials, trials[2], data, settings) is None  # the best saved no outputs
    assert validation_noise(trials, trials[0], data, replace(settings, metric="val_latency")) is None


@pytest.mark.parametrize("target", ["classification", "multilabel", "regression"])
def test_batched_resampled_metrics_equal_the_search_metrics(target):
    """On each resample the batched scores are the metrics a trial reports (output_metrics)."""
    data = fake_data(["text"], n=80, classes=3, target=target)
    idx = data.indices(1)
    y = torch.from_numpy(data.targets[idx])
    rng = np.random.default_rng(1)
    raw = torch.from_numpy(rng.normal(0, 1, (len(idx), data.meta.num_outputs)).astype(np.float32))
    outputs = probabilities(raw, target)
    draws = torch.from_numpy(rng.integers(0, len(idx), (4, len(idx))))
    metrics = output_metrics(raw, y, data.meta, prefix="val")
    assert metrics  # the loop below compares something
    for metric in metrics:
        got = resampled(outputs, y, draws, data.meta, metric)
        want = [output_metrics(as_outputs(outputs, target)[d], y[d], data.meta, prefix="val")[metric] for d in draws]
        assert got == pytest.approx(want, abs=1e-5), metric


def test_metrics_scored_one_resample_at_a_time_use_fewer_resamples(tmp_path):
    data = fake_data(["text"], n=80, classes=3, target="multilabel")
    y = data.targets[data.indices(1)]
    trials = _trials(tmp_path, [np.clip(y, 0.1, 0.9), np.full_like(y, 0.5)], [1.0, 0.3])
    n = validation_noise(trials, trials[0], data, replace(SETTINGS, metric="val_f1_macro"))
    assert n.resamples == SLOW[0] and n.compared == 1 and n.low > 0.9

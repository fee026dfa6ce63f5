"""Which trial a search keeps (best on validation, Pareto front) and the one trial table, on
hand-made TrialRecords: no Ray, no training, no MLflow."""

from __future__ import annotations

from dataclasses import replace

from autofusion.search.records import Settings, TrialRecord
from autofusion.search.selection import best_trial, objective_values, pareto_front
from autofusion.search.table import csv_columns, trial_rows, view_columns

SETTINGS = Settings(num_trials=6, max_epochs=4, concurrency=1, seed=0, sampler="tpe", scheduler="fifo",
                    metric="val_accuracy", mode="max", objectives=("num_params",), time_budget=None,
                    cpus_per_trial=1, gpus_per_trial=0, grace_period=1)


def _trial(number: int, value: float | None, status: str = "finished", params: int | None = 1000,
           latency: float | None = 1.0) -> TrialRecord:
    return TrialRecord(f"t{number}", number, {"fusion.type": "mid", "encoder.image": "small_cnn",
                                              "encoder.text": "embedding_bag", "optimizer.type": "adamw",
                                              "optimizer.lr": 0.003},
                       status=status, best_value=value, num_params=params, latency_ms=latency, run_id=f"r{number}")


def test_the_best_trial_is_chosen_on_validation_among_finished_and_pruned():
    trials = [_trial(1, 0.5), _trial(2, 0.9, "pruned"), _trial(3, 0.99, "failed"), _trial(4, None)]
    assert best_trial(trials, "val_accuracy", "max").number == 2  # a failed trial never wins
    assert best_trial(trials, "val_accuracy", "min").number == 1
    assert best_trial([_trial(1, 0.7), _trial(2, 0.7)], "val_accuracy", "max").number == 1  # ties: the first
    assert best_trial([_trial(1, 0.7), _trial(2, 0.7)], "val_accuracy", "min").number == 1
    assert best_trial([_trial(1, None), _trial(2, 0.8, "failed")], "val_accuracy", "max") is None


def test_objectives_are_turned_into_smaller_is_better():
    assert objective_values(_trial(1, 0.8, params=500), SETTINGS) == [-0.8, 500.0]
    assert objective_values(_trial(1, 0.8), replace(SETTINGS, mode="min", objectives=("latency_ms",))) == [0.8, 1.0]
    assert objective_values(_trial(1, None), SETTINGS) is None
    assert objective_values(_trial(1, 0.8, params=None), SETTINGS) is None


def test_the_pareto_front_keeps_the_non_dominated_trials():
    trials = [_trial(4, 0.9, params=4000), _trial(1, 0.8, params=1000), _trial(2, 0.7, params=2000),
              _trial(3, 0.95, "pruned", params=8000), _trial(5, 0.99, "failed", params=10),
              _trial(6, 0.85, params=None), _trial(7, 0.8, params=1000)]
    front = pareto_front(trials, SETTINGS)
    # 2 is dominated by 1 (worse and bigger); 5 failed; 6 has no size; 7 ties 1 and is kept
    assert [t.number for t in front] == [1, 3, 4, 7]


def test_one_table_serves_the_csv_artifact_and_the_trials_view():
    trials = [_trial(1, 0.8), TrialRecord("t2", 2, {"encoder.text": "bigru", "encoder.image": "resnet18"},
                                          status="failed", error="ValueError: boom")]
    trials[0].history = [{}, {}]
    trials[0].best_epoch, trials[0].seconds = 2, 3.14159
    rows = trial_rows(trials, "val_accuracy", ["image", "text"], best_run_id="r1")
    assert [r["best"] for r in rows] == [True, False]
    first, second = rows
    assert (first["encoders"], first["encoder.image"], first["lr"], first["epochs"], first["seconds"]) == (
        "small_cnn+embedding_bag", "small_cnn", 0.003, 2, 3.14)
    assert (second["encoders"], second["fusion"], second["lr"], second["error"]) == (
        "resnet18+bigru", None, None, "ValueError: boom")  # encoders sorted by modality
    assert set(csv_columns("val_accuracy", ["image", "text"])) <= set(first)
    assert set(view_columns("val_accuracy")) <= set(first)
    assert csv_columns("val_accuracy", ["image", "text"]) == [
        "trial", "status", "fusion", "encoder.image", "encoder.text", "val_accuracy", "best_epoch", "epochs", "params",
        "latency_ms", "seconds", "run_id", "error", "ensemble_weight"]
    assert trial_rows(trials, "val_accuracy")[0]["best"] is False  # no best known: none marked

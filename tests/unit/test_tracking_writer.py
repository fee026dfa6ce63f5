"""The MLflow writer thread and the search's end-of-run artifacts, against a real sqlite store
in tmp_path: the run tree, params, per-epoch metrics, tags and statuses they leave."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from autofusion import tracking
from autofusion.search.records import SearchResult, Settings, TrialRecord
from autofusion.tracking import artifacts
from autofusion.tracking import writer as writer_module
from autofusion.tracking.writer import TrackingWriter

SETTINGS = Settings(num_trials=2, max_epochs=2, concurrency=1, seed=0, sampler="tpe", scheduler="fifo",
                    metric="val_accuracy", mode="max", objectives=("num_params",), time_budget=None,
                    cpus_per_trial=1, gpus_per_trial=0, grace_period=1)


@pytest.fixture
def parent(sqlite_uri):
    c = tracking.client(sqlite_uri)
    exp = tracking.experiment_id(sqlite_uri, "demo")
    return sqlite_uri, exp, c.create_run(exp, tags={tracking.KIND_TAG: "search"}).info.run_id


def test_a_trial_becomes_a_nested_child_run(parent):
    uri, exp, pid = parent
    w = TrackingWriter(uri, exp, pid)
    w.start_trial("t1", "trial-001-mid", {"fusion.type": "mid", "optimizer.lr": 0.003, "long": "x" * 7000},
                  {"autofusion.trial_id": "t1"})
    w.log_metrics("t1", {"val_accuracy": 0.5, "nan": float("nan"), "inf": float("inf")}, step=1)
    w.log_metrics("t1", {"val_accuracy": 0.75}, step=2)
    w.log_metrics("t1", {"val_accuracy": 0.1}, step=1)  # a replayed epoch: already logged
    w.set_tags("t1", {"autofusion.checkpoint": "/ckpt"})
    w.log_metrics(None, {"search_progress": 1.0}, tags={"autofusion.note": "parent"})
    w.end_trial("t1", "pruned", {"autofusion.epochs_run": "2"})
    rid = w.run_id("t1")
    w.close()
    assert w.errors == []
    c = tracking.client(uri)
    run = c.get_run(rid)
    tags, params = run.data.tags, run.data.params
    assert run.info.run_name == "trial-001-mid" and run.info.status == "FINISHED"  # pruned ends FINISHED
    assert (tags[tracking.PARENT_TAG], tags[tracking.KIND_TAG], tags["autofusion.status"]) == (pid, "trial", "pruned")
    assert (tags["autofusion.checkpoint"], tags["autofusion.epochs_run"]) == ("/ckpt", "2")
    assert params["optimizer.lr"] == "0.003" and len(params["long"]) == 6000 and params["long"].endswith("...")
    hist = c.get_metric_history(rid, "val_accuracy")
    assert sorted((m.step, m.value) for m in hist) == [(1, 0.5), (2, 0.75)]
    assert "nan" not in run.data.metrics and "inf" not in run.data.metrics
    p = c.get_run(pid).data
    assert p.metrics["search_progress"] == 1.0 and p.tags["autofusion.note"] == "parent"


def test_a_resumed_trial_reuses_its_run_and_skips_logged_epochs(parent):
    uri, exp, pid = parent
    c = tracking.client(uri)
    old = c.create_run(exp, tags={tracking.PARENT_TAG: pid}).info.run_id
    c.log_metric(old, "val_accuracy", 0.4, step=1)
    c.set_terminated(old, status="KILLED")
    w = TrackingWriter(uri, exp, pid)
    w.adopt("t1", old, {1})
    w.start_trial("t1", "ignored", {"fusion.type": "mid"}, {})
    w.flush()
    assert c.get_run(old).info.status == "RUNNING" and "fusion.type" not in c.get_run(old).data.params
    w.log_metrics("t1", {"val_accuracy": 0.9}, step=1)
    w.log_metrics("t1", {"val_accuracy": 0.8}, step=2)
    w.end_trial("t1", "interrupted")
    w.close()
    assert sorted((m.step, m.value) for m in c.get_metric_history(old, "val_accuracy")) == [(1, 0.4), (2, 0.8)]
    assert c.get_run(old).info.status == "KILLED"
    assert len(tracking.find_child_runs(uri, exp, pid)) == 1


def test_a_write_that_keeps_failing_is_reported_not_raised(parent, monkeypatch):
    monkeypatch.setattr(writer_module, "WRITER_ATTEMPTS", 1)
    uri, exp, pid = parent
    w = TrackingWriter(uri, exp, pid)
    w.log_metrics("never-started", {"val_accuracy": 0.5}, step=1)
    w.close()
    assert len(w.errors) == 1 and w.errors[0].startswith("KeyError")


def test_a_mistake_in_a_write_is_not_retried():
    """A store that is locked or restarting gets its retries; a write that is wrong (a TypeError:
    no bytes to write) fails the same on every attempt, so it is not tried again (it was, for
    35 s, twice per search with a one-row test split)."""
    calls = []

    def wrong():
        calls.append(1)
        raise TypeError("memoryview: a bytes-like object is required, not 'NoneType'")

    with pytest.raises(TypeError):
        tracking.retry(wrong, first_delay=0.01)
    assert len(calls) == 1
    def locked_twice():
        calls.append(2)
        if len(calls) < 4:
            raise OSError("database is locked")
        return "ok"

    assert tracking.retry(locked_twice, first_delay=0.01) == "ok" and len(calls) == 4  # 1 + 3 attempts


def test_the_parent_summary_logs_counts_best_metrics_and_the_trials_table(parent):
    uri, exp, pid = parent
    config = {"fusion.type": "mid", "encoder.image": "small_cnn", "encoder.text": "bigru"}
    best = TrialRecord("t1", 1, config, status="finished", best_value=0.75, best_epoch=2, num_params=100,
                       latency_ms=1.0, run_id="r1", history=[{"val_accuracy": 0.5}, {"val_accuracy": 0.75}])
    failed = TrialRecord("t2", 2, {**config, "fusion.type": "gated"}, status="failed", error="ValueError: boom",
                         run_id="r2")
    result = SearchResult(parent_run_id=pid, experiment_id=exp, experiment="demo", tracking_uri=uri,
                          settings=SETTINGS, trials=[best, failed], best=best, test_metrics={"test_accuracy": 0.7},
                          model_uri="models:/m-1", wall_seconds=12.0, data_summary={}, pareto=[best],
                          default_trial=best)
    artifacts.log_parent_summary(uri, result, None, ["image", "text"])
    c = tracking.client(uri)
    run = c.get_run(pid).data
    assert {k: run.metrics[k] for k in ("trials_finished", "trials_failed", "best_val_accuracy", "test_accuracy",
                                        "default_val_accuracy")} == {
        "trials_finished": 1.0, "trials_failed": 1.0, "best_val_accuracy": 0.75, "test_accuracy": 0.7,
        "default_val_accuracy": 0.75}
    assert (run.tags["autofusion.best_run_id"], run.tags["autofusion.best_trial"], run.tags["autofusion.model_uri"]) == (
        "r1", "1", "models:/m-1")
    local = c.download_artifacts(pid, "")
    table = pd.read_csv(f"{local}/trials.csv")
    assert list(table.columns) == ["trial", "status", "fusion", "encoder.image", "encoder.text", "val_accuracy",
                                   "best_epoch", "epochs", "params", "latency_ms", "seconds", "run_id", "error",
                                   "ensemble_weight"]
    assert table["error"].tolist()[1] == "ValueError: boom" and table["epochs"].tolist() == [2, 0]
    pareto = json.load(open(f"{local}/pareto_front.json"))
    assert pareto == [{"trial": 1, "run_id": "r1", "val_accuracy": 0.75, "num_params": 100, "latency_ms": 1.0}]


def test_an_experiment_created_by_another_search_in_between_is_joined(sqlite_uri, monkeypatch):
    """Two searches starting on one new store both find no experiment; the one that creates it
    second gets MLflow's unique-name error and must join the experiment, not fail."""
    first = tracking.experiment_id(sqlite_uri, "image_text")  # the other search, a moment earlier
    real = mlflow.MlflowClient.get_experiment_by_name
    calls = []

    def stale_then_real(self, name):  # this search looked before the other one created it
        calls.append(name)
        return None if len(calls) == 1 else real(self, name)

    monkeypatch.setattr(mlflow.MlflowClient, "get_experiment_by_name", stale_then_real)
    assert tracking.experiment_id(sqlite_uri, "image_text") == first
    assert len(calls) == 2

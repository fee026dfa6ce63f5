"""The driver-side Tune callback, driven by hand with small fake trials, a fake writer and the
real progress view: the records it keeps, what it asks the writer to log, what it prints."""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from autofusion.search.callback import SearchCallback
from autofusion.search.progress import ProgressView
from autofusion.search.records import Settings

SETTINGS = Settings(num_trials=3, max_epochs=4, concurrency=1, seed=0, sampler="tpe", scheduler="asha",
                    metric="val_accuracy", mode="max", objectives=(), time_budget=None, cpus_per_trial=1,
                    gpus_per_trial=0, grace_period=2)
CONFIG = {"fusion.type": "gated", "encoder.image": "small_cnn", "encoder.text": "bigru", "train.epochs": 8}


class FakeWriter:
    """Records the calls the callback makes, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def _trial(trial_id: str, config: dict | None = None, error_file: str | None = None, error: str = "") -> Any:
    return SimpleNamespace(trial_id=trial_id, config=config or CONFIG, error_file=error_file, get_error=lambda: error)


def _callback(key: str = "search-1") -> tuple[SearchCallback, FakeWriter, io.StringIO]:
    out = io.StringIO()
    view = ProgressView(SETTINGS, console=Console(file=out, force_terminal=False, width=200))
    writer = FakeWriter()
    SearchCallback.attach(key, writer, view)
    return SearchCallback(key, SETTINGS, ["image", "text"]), writer, out


def _epoch(cb: SearchCallback, trial: Any, epoch: int, accuracy: float) -> None:
    cb.on_trial_result(0, [], trial, {"training_iteration": epoch, "val_accuracy": accuracy, "train_loss": 1.0 / epoch,
                                      "num_params": 1234, "latency_ms": 2.5, "epoch_seconds": 1.5,
                                      "fusion_weight.image": 0.7, "done": False, "trial_id": "x", "flag": True})


def test_a_trial_stopped_early_is_recorded_pruned_with_its_best_epoch():
    cb, writer, out = _callback()
    t = _trial("a")
    cb.on_trial_start(0, [], t)
    rec = cb.records["a"]
    assert (rec.number, rec.status, rec.planned_epochs) == (1, "running", 4)  # train.epochs capped at max_epochs
    name, args, _ = writer.calls[0]
    assert name == "start_trial" and args[1] == "trial-001-gated" and args[2] == CONFIG
    assert args[3]["autofusion.summary"] == "gated · small_cnn+bigru" and args[3]["autofusion.planned_epochs"] == "4"
    _epoch(cb, t, 1, 0.5)
    _epoch(cb, t, 2, 0.75)
    cb.on_checkpoint(0, [], t, SimpleNamespace(path="/ckpt/a"))
    assert (rec.best_value, rec.best_epoch, rec.checkpoint, rec.num_params, rec.seconds) == (0.75, 2, "/ckpt/a", 1234, 3.0)
    assert rec.input_weights == {"image": 0.7}
    logged = [c for c in writer.calls if c[0] == "log_metrics"]
    assert [c[2]["step"] for c in logged] == [1, 2]
    assert set(logged[0][1][1]) == {"val_accuracy", "train_loss", "num_params", "latency_ms", "epoch_seconds",
                                    "fusion_weight.image"}  # Tune's own keys and booleans are not metrics
    cb.on_trial_complete(0, [], t)
    assert rec.status == "pruned"  # 2 of 4 planned epochs
    assert writer.calls[-2] == ("log_metrics", ("a", {"best_val_accuracy": 0.75}), {})
    assert writer.calls[-1] == ("end_trial", ("a", "pruned", {"autofusion.epochs_run": "2", "autofusion.stop_reason":
                                                              "stopped", "autofusion.best_epoch": "2"}), {})
    assert out.getvalue().startswith("trial   1 pruned   val_accuracy=0.7500")
    view = cb.view
    assert view.line().startswith("trials 1/3 done · 0 running · 1 pruned · 0 failed │ best val_accuracy 0.7500 (trial 1)")


def test_a_trial_its_own_early_stopping_ended_converged_and_is_not_pruned():
    cb, writer, _ = _callback()
    t = _trial("c")
    cb.on_trial_start(0, [], t)
    _epoch(cb, t, 1, 0.75)
    cb.on_trial_result(0, [], t, {"training_iteration": 2, "val_accuracy": 0.5, "converged": 1.0})
    cb.on_trial_complete(0, [], t)
    rec = cb.records["c"]
    assert (rec.status, rec.stop_reason, len(rec.history), rec.best_epoch) == ("finished", "converged", 2, 1)
    assert writer.calls[-1][1][1] == "finished" and writer.calls[-1][1][2]["autofusion.stop_reason"] == "converged"


def test_a_finished_trial_prints_the_counts_when_not_on_a_terminal():
    cb, _, out = _callback()
    cb.on_trial_start(0, [], _trial("a"))
    cb.on_trial_complete(0, [], _trial("a"))
    assert "trials 1/3 done" in out.getvalue()


def test_a_restarted_trial_replays_its_epochs_without_duplicates():
    cb, _, _ = _callback()
    t = _trial("a", {**CONFIG, "train.epochs": 2})
    cb.on_trial_start(0, [], t)
    for epoch, acc in [(1, 0.4), (2, 0.6), (1, 0.5), (2, 0.55)]:
        _epoch(cb, t, epoch, acc)
    rec = cb.records["a"]
    assert [h["val_accuracy"] for h in rec.history] == [0.5, 0.55]
    cb.on_trial_complete(0, [], t)
    assert rec.status == "finished" and cb.study_trials() == [rec]


def test_a_failed_trial_keeps_the_last_line_of_its_traceback(tmp_path):
    error = tmp_path / "error.txt"
    error.write_text('Traceback (most recent call last):\n  File "x.py", line 1, in f\n    boom()\n'
                     "ValueError: the loss diverged at epoch 3\n")
    cb, writer, out = _callback()
    t = _trial("b", error_file=str(error))
    cb.on_trial_start(0, [], t)
    cb.on_trial_error(0, [], t)
    rec = cb.records["b"]
    assert (rec.status, rec.error) == ("failed", "ValueError: the loss diverged at epoch 3")
    assert writer.calls[-1][1][2]["autofusion.error"] == rec.error
    cb.on_trial_start(0, [], _trial("c", error="RuntimeError: no file, from Tune"))
    cb.on_trial_error(0, [], _trial("c", error="RuntimeError: no file, from Tune"))
    assert cb.records["c"].error == "RuntimeError: no file, from Tune" and cb.records["c"].number == 2
    assert "failed" in out.getvalue()


def test_a_pickled_callback_finds_the_writer_and_view_of_its_search():
    cb, writer, _ = _callback("search-2")
    again = pickle.loads(pickle.dumps(cb))  # Tune saves callbacks with the experiment state
    assert again.writer is writer and again.view.records is again.records


def test_a_quiet_view_prints_nothing():
    out = io.StringIO()
    view = ProgressView(SETTINGS, console=Console(file=out, force_terminal=False), quiet=True)
    SearchCallback.attach("quiet", FakeWriter(), view)
    cb = SearchCallback("quiet", SETTINGS, ["image", "text"])
    with view:
        cb.on_trial_start(0, [], _trial("a"))
        cb.on_trial_complete(0, [], _trial("a"))
    assert out.getvalue() == ""

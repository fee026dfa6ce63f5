"""The driver-side Ray Tune callback: keeps a record per trial, forwards every event to the
MLflow writer thread (:mod:`autofusion.tracking.writer`) and to the progress view.

Why a driver-side callback rather than MLflow runs opened inside trials: sqlite allows one
writer at a time, and a Ray worker that dies would take its unlogged metrics with it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray.tune import Callback

from autofusion.metrics import better
from autofusion.search.progress import ProgressView
from autofusion.search.records import Settings, TrialRecord

REPORTED_PREFIXES = ("train_", "val_", "fusion_weight.", "num_params", "latency_ms", "epoch_seconds", "peak_",
                     "soup_")  # soup_kept, soup_val_*: checkpoint averaging (train/soup.py)


def _short(config: dict[str, Any], modalities: list[str]) -> str:
    encs = "+".join(str(config.get(f"encoder.{m}", "?")) for m in modalities)
    return f"{config.get('fusion.type', '?')} · {encs}"


# The live writer and view of each running search, by parent run id. Tune pickles its
# callbacks with the experiment state; the callback keeps only this key, so a restored
# callback finds the writer and view of the process that resumes the search.
_ATTACHED: dict[str, tuple[Any, ProgressView]] = {}


class SearchCallback(Callback):
    """Turns Tune's trial events into :class:`TrialRecord` s, MLflow writes and progress."""

    def __init__(self, key: str, settings: Settings, modalities: list[str]) -> None:
        self.key = key
        self.settings = settings
        self.modalities = modalities
        self.records: dict[str, TrialRecord] = {}

    @staticmethod
    def attach(key: str, writer: Any, view: ProgressView) -> None:
        """Makes ``writer`` and ``view`` the ones every callback of search ``key`` uses."""
        _ATTACHED[key] = (writer, view)

    @property
    def writer(self) -> Any:
        return _ATTACHED[self.key][0]

    @property
    def view(self) -> ProgressView:
        view = _ATTACHED[self.key][1]
        view.records = self.records
        return view

    def _record(self, trial: Any) -> TrialRecord:
        rec = self.records.get(trial.trial_id)
        if rec is None:
            if getattr(self, "_base", None) is None:  # the trials of an earlier attempt (--resume) come first
                self._base = max((r.number for r in self.records.values()), default=0)
            created = _creation_number(trial)
            number = (self._base + created if created is not None
                      else max((r.number for r in self.records.values()), default=0) + 1)
            rec = TrialRecord(trial.trial_id, number, dict(trial.config))
            planned = int(rec.config.get("train.epochs") or self.settings.max_epochs)
            rec.planned_epochs = min(planned, self.settings.max_epochs)
            self.records[trial.trial_id] = rec
        return rec

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        rec.status = "running"
        self.view.first_start = self.view.first_start or time.time()
        self.writer.start_trial(
            trial.trial_id, f"trial-{rec.number:03d}-{rec.config.get('fusion.type', '')}", rec.config,
            {"autofusion.trial_id": trial.trial_id, "autofusion.trial_number": str(rec.number),
             "autofusion.status": "running", "autofusion.summary": _short(rec.config, self.modalities),
             "autofusion.config": json.dumps(rec.config, default=str),
             "autofusion.planned_epochs": str(rec.planned_epochs)},
        )
        self.view.refresh()

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        rec = self._record(trial)
        rec.checkpoint = checkpoint.path
        self.writer.set_tags(trial.trial_id, {"autofusion.checkpoint": checkpoint.path})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        rec = self._record(trial)
        epoch = int(result.get("training_iteration", len(rec.history) + 1))
        metrics = {k: float(v) for k, v in result.items()
                   if k.startswith(REPORTED_PREFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if epoch <= len(rec.history):  # a restarted trial replays epochs already recorded
            rec.history = rec.history[: epoch - 1]
        rec.history.append(metrics)
        rec.seconds = sum(h.get("epoch_seconds", 0.0) for h in rec.history)
        rec.num_params = int(metrics["num_params"]) if "num_params" in metrics else rec.num_params
        rec.latency_ms = metrics.get("latency_ms", rec.latency_ms)
        rec.input_weights = {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("fusion_weight.")}
        value = metrics.get(self.settings.metric)
        if better(value, rec.best_value, self.settings.mode):
            rec.best_value, rec.best_epoch = value, epoch
        rec.stop_reason = "converged" if result.get("converged") else None
        self.writer.log_metrics(trial.trial_id, metrics, step=epoch)
        self.view.refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        rec.status, rec.stop_reason = ended(rec)
        self._end(trial.trial_id, rec)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        rec.status = "failed"
        rec.error = _error_line(trial)
        self._end(trial.trial_id, rec, {"autofusion.error": rec.error})

    def _end(self, trial_id: str, rec: TrialRecord, tags: dict[str, str] | None = None) -> None:
        extra = {"autofusion.epochs_run": str(len(rec.history))}
        if rec.stop_reason:
            extra["autofusion.stop_reason"] = rec.stop_reason
        if rec.best_epoch is not None:
            extra["autofusion.best_epoch"] = str(rec.best_epoch)
            self.writer.log_metrics(trial_id, {f"best_{self.settings.metric}": rec.best_value})
        self.writer.end_trial(trial_id, rec.status, {**extra, **(tags or {})})
        self.view.trial_done(rec)

    def study_trials(self) -> list[TrialRecord]:
        """The records so far, by trial number."""
        return sorted(self.records.values(), key=lambda r: r.number)


def _creation_number(trial: Any) -> int | None:
    """The order in which Tune created the trial from the searcher's suggestions (its experiment
    tag starts with it: ``3_fusion.type=mid,...``), so trials are numbered as they were suggested
    rather than in whichever order two of them happened to start."""
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else None


def ended(rec: TrialRecord) -> tuple[str, str]:
    """A completed trial's status and why it ended: finished when it converged (its early
    stopping ended it, ``converged`` in its last report) or ran every planned epoch; pruned
    when the scheduler or the time budget cut it short."""
    if rec.stop_reason == "converged":
        return "finished", "converged"
    if len(rec.history) >= rec.planned_epochs:
        return "finished", "epochs"
    return "pruned", "stopped"


def _error_line(trial: Any) -> str:
    """The last line of a failed trial's traceback: the exception and its message."""
    text = ""
    try:  # the local error file is written before this callback; storage is synced later
        if trial.error_file:
            with open(trial.error_file, encoding="utf-8", errors="replace") as f:
                text = f.read()
        text = text or trial.get_error() or ""
    except Exception:  # noqa: BLE001
        pass
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ":" in ln and not ln.startswith(("File ", "^", "~")):
            return ln[:500]
    return lines[-1][:500] if lines else "the trial failed"

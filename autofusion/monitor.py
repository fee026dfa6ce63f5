"""The driver-side Ray Tune callback: keeps a record per trial, forwards every event to the
MLflow writer thread, and draws a compact live progress view instead of Ray's log wall."""

from __future__ import annotations

import json
import time
from typing import Any

from ray.tune import Callback

from autofusion.search import Settings, TrialRecord

REPORTED_PREFIXES = ("train_", "val_", "fusion_weight.", "num_params", "latency_ms", "epoch_seconds", "peak_")


def _short(config: dict[str, Any], modalities: list[str]) -> str:
    encs = "+".join(str(config.get(f"encoder.{m}", "?")) for m in modalities)
    return f"{config.get('fusion.type', '?')} · {encs}"


# The live writer and view of each running search, by parent run id. Tune pickles its
# callbacks with the experiment state; the callback keeps only this key, so a restored
# callback finds the writer and view of the process that resumes the search.
_ATTACHED: dict[str, tuple[Any, "ProgressView"]] = {}


class SearchCallback(Callback):
    """Turns Tune's trial events into :class:`TrialRecord` s, MLflow writes and progress."""

    def __init__(self, key: str, settings: Settings, modalities: list[str]) -> None:
        self.key = key
        self.settings = settings
        self.modalities = modalities
        self.records: dict[str, TrialRecord] = {}

    @staticmethod
    def attach(key: str, writer: Any, view: "ProgressView") -> None:
        _ATTACHED[key] = (writer, view)

    @property
    def writer(self) -> Any:
        return _ATTACHED[self.key][0]

    @property
    def view(self) -> "ProgressView":
        view = _ATTACHED[self.key][1]
        view.records = self.records
        return view


    def _record(self, trial: Any) -> TrialRecord:
        rec = self.records.get(trial.trial_id)
        if rec is None:
            number = max((r.number for r in self.records.values()), default=0) + 1
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
        rec.fusion_weights = {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("fusion_weight.")}
        value = metrics.get(self.settings.metric)
        if value is not None and (
            rec.best_value is None or (value > rec.best_value if self.settings.mode == "max" else value < rec.best_value)
        ):
            rec.best_value, rec.best_epoch = value, epoch
        self.writer.log_metrics(trial.trial_id, metrics, step=epoch)
        self.view.refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        rec.status = "pruned" if len(rec.history) < rec.planned_epochs else "finished"
        self._end(trial.trial_id, rec)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = self._record(trial)
        rec.status = "failed"
        rec.error = _error_line(trial)
        self._end(trial.trial_id, rec, {"autofusion.error": rec.error})

    def _end(self, trial_id: str, rec: TrialRecord, tags: dict[str, str] | None = None) -> None:
        extra = {"autofusion.epochs_run": str(len(rec.history))}
        if rec.best_epoch is not None:
            extra["autofusion.best_epoch"] = str(rec.best_epoch)
            self.writer.log_metrics(trial_id, {f"best_{self.settings.metric}": rec.best_value})
        self.writer.end_trial(trial_id, rec.status, {**extra, **(tags or {})})
        self.view.trial_done(rec)

    def study_trials(self) -> list[TrialRecord]:
        return sorted(self.records.values(), key=lambda r: r.number)


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


class ProgressView:
    """done/running/pruned/failed counts, the best so far, elapsed time and an ETA.

    On a terminal it is a one-panel ``rich.live.Live``; elsewhere (CI, pipes) it prints one
    line per finished trial. ``quiet`` prints nothing.
    """

    def __init__(self, settings: Settings, *, console: Any = None, quiet: bool = False, done_before: int = 0) -> None:
        from rich.console import Console

        self.settings = settings
        self.done_before = done_before
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.records: dict[str, TrialRecord] = {}
        self.t0 = time.time()
        self._live: Any = None
        self.first_start: float | None = None

    def __enter__(self) -> "ProgressView":
        self.t0 = time.time()
        if not self.quiet and self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self, console=self.console, refresh_per_second=2, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def counts(self) -> dict[str, int]:
        c = {"finished": 0, "pruned": 0, "failed": 0, "running": 0}
        for r in self.records.values():
            c[r.status] = c.get(r.status, 0) + 1
        return c

    def line(self) -> str:
        s = self.settings
        c = self.counts()
        done = c["finished"] + c["pruned"] + c["failed"]
        best = [r for r in self.records.values() if r.best_value is not None]
        best_txt = "-"
        if best:
            b = (max if s.mode == "max" else min)(best, key=lambda r: r.best_value)
            best_txt = f"{b.best_value:.4f} (trial {b.number})"
        elapsed = time.time() - self.t0
        eta = "-"
        if done > self.done_before:
            eta = _hms(elapsed / (done - self.done_before) * (s.num_trials - done))
        return (f"trials {done}/{s.num_trials} done · {c['running']} running · {c['pruned']} pruned · "
                f"{c['failed']} failed │ best {s.metric} {best_txt} │ elapsed {_hms(elapsed)} · ETA {eta}")

    def __rich__(self) -> Any:
        """Re-rendered on every refresh, so the elapsed time and ETA keep moving."""
        from rich.text import Text

        return Text(self.line())

    def refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def trial_done(self, rec: TrialRecord) -> None:
        if self.quiet:
            return
        if self._live is None:
            val = f"{rec.best_value:.4f}" if rec.best_value is not None else "-"
            self.console.print(f"trial {rec.number:>3} {rec.status:<8} {self.settings.metric}={val}  "
                               f"[{self.line()}]", highlight=False, soft_wrap=True)
        else:
            self.refresh()


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"

"""The live progress of a search: counts, the best so far, elapsed time and an ETA, instead
of Ray's log wall."""

from __future__ import annotations

import time
from typing import Any

from autofusion.metrics import best_first
from autofusion.search.records import Settings, TrialRecord


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

    def __enter__(self) -> ProgressView:
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
            b = min(best, key=lambda r: best_first(r.best_value, s.mode))
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
                               f"[{self.line()}]", highlight=False, soft_wrap=True, markup=False)
        else:
            self.refresh()


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def say(line: str, quiet: bool, console: Any = None) -> None:
    """One line on stderr (or ``console``) before a step that takes a while, unless quiet."""
    if quiet:
        return
    from rich.console import Console

    (console or Console(stderr=True)).print(line, highlight=False, soft_wrap=True, markup=False)


def say_prepared(chosen: list[str], notes: list[str], quiet: bool, console: Any = None) -> None:
    """Prints the preprocessing settings chosen from the data and the features built, before
    the trials start (they are logged with the search run too)."""
    if chosen:
        say("Preprocessing chosen from the training data (set them in the space's modalities to change them): "
            + "; ".join(chosen), quiet, console)
    for note in notes:
        say(f"Features: {note}", quiet, console)

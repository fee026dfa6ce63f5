"""Where a search's time goes: its phases, timed on the thread that drives it, one after
another, so that they add up to the command's wall time.

The driver holds one :class:`Phases` and moves from phase to phase (``enter("trials")``);
code further down the pipeline that does one phase's work inside another (the decode inside
reading the data) marks it with :func:`during`, which does nothing when no search is timing
itself (``autofusion data inspect``). A leaf: it imports nothing of autofusion.
"""

from __future__ import annotations

import contextlib
import os
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

# The phases in the order a search runs them, with the words the summary prints.
PHASES = {
    "startup": "start-up",  # the interpreter, the imports, the checks that need no data
    "data": "data",  # reading the manifest and checking its rows, the split, the settings
    "decode": "decode",  # image, audio and video files into arrays (or the decode cache read)
    "features": "features",  # the feature extractors fitted and applied (or their cache read)
    "ray": "Ray start",  # waiting for Ray (started beside the features)
    "trials": "trials",  # the trials, from the Tuner's start to its end
    "trees": "trees",  # LightGBM tuned on the driver after the trials (search/trees.py)
    "test": "test",  # the best trial's test evaluation
    "ensemble": "ensemble",  # greedy ensemble selection (its test and model too) and the validation noise
    "bagging": "bagging",  # k-fold bagging of the chosen configurations (search/bagging.py), its test and model
    "serving": "served model",  # the search's model loaded as served: its inputs' importance, its latency
    "logging": "logging",  # the search run, the best model, the summary, plots and report in MLflow
    "shutdown": "shutdown",  # the trial runs closed, Ray stopped
}
METRIC_PREFIX = "phase_seconds."

_active: ContextVar[Phases | None] = ContextVar("autofusion_phases", default=None)


class Phases:
    """Consecutive phases of one search, in seconds of wall time."""

    def __init__(self, started: float | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.current = "startup"
        self.started = started if started is not None else time.time()  # seconds since the epoch
        # the phases are measured on the monotonic clock: the wall clock can be stepped (NTP,
        # a virtual machine's clock caught up)
        self._since = time.monotonic() - max(time.time() - self.started, 0.0)

    def enter(self, name: str) -> None:
        """Ends the current phase and starts ``name`` (time in one phase adds up over visits)."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; known: {', '.join(PHASES)}")
        now = time.monotonic()
        self.seconds[self.current] = self.seconds.get(self.current, 0.0) + max(now - self._since, 0.0)
        self.current, self._since = name, now

    @contextlib.contextmanager
    def during(self, name: str) -> Iterator[None]:
        """``name`` for the block, then back to the phase it interrupted."""
        previous = self.current
        self.enter(name)
        try:
            yield
        finally:
            self.enter(previous)

    def snapshot(self) -> dict[str, float]:
        """Seconds per phase so far (the current one up to now), in the phases' order."""
        now = {**self.seconds}
        now[self.current] = now.get(self.current, 0.0) + max(time.monotonic() - self._since, 0.0)
        return {k: now[k] for k in PHASES if k in now}

    def line(self) -> str:
        """``start-up 2.1s · data 0.3s · ... = 41.0s`` (phases that took 0.05 s or more)."""
        return phase_line(self.snapshot())


def phase_line(seconds: dict[str, float]) -> str:
    """One line of phases and their seconds, and their total."""
    shown = [f"{PHASES.get(k, k)} {v:.1f}s" for k, v in seconds.items() if v >= 0.05]
    return " · ".join(shown) + f" = {sum(seconds.values()):.1f}s"


@contextlib.contextmanager
def timing(phases: Phases) -> Iterator[Phases]:
    """Makes ``phases`` the one :func:`during` marks, for the block (this thread, this context)."""
    token = _active.set(phases)
    try:
        yield phases
    finally:
        _active.reset(token)


def during(name: str) -> contextlib.AbstractContextManager:
    """Times the block as phase ``name`` of the search being timed, if any."""
    phases = _active.get()
    return phases.during(name) if phases is not None else contextlib.nullcontext()


LAUNCH_S = 5.0  # an interpreter imports its first module sooner than this after its process starts


def process_started() -> float:
    """When this program started (seconds since the epoch): its process's start (Linux's
    /proc), so that the interpreter's own start counts; but when that came more than
    ``LAUNCH_S`` before the program imported autofusion, the process ran something else first
    (a shell runs the last command of ``a && b`` in its own process, and ``exec`` keeps the
    process's start: the README's first command once read a 5 s start-up as 119 s, pip's
    install included), and the program counts from that import."""
    from autofusion import IMPORTED_AT

    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(after_name[19])  # field 22, starttime, in clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        started = time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return IMPORTED_AT
    return started if IMPORTED_AT - started < LAUNCH_S else IMPORTED_AT

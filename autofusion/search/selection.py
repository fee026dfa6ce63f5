"""Which trials a search keeps: the best one on validation, the Pareto front over the metric
and the extra objectives, and the trial that ran a given configuration (the hand-built one).
Plain functions over :class:`TrialRecord` s; nothing is read or written."""

from __future__ import annotations

from typing import Any

from autofusion.metrics import EXTRA_OBJECTIVES, best_first
from autofusion.search.records import Settings, TrialRecord


def best_trial(trials: list[TrialRecord], metric: str, mode: str) -> TrialRecord | None:
    """The trial with the best validation value at any epoch (finished or pruned)."""
    ok = [t for t in trials if t.best_value is not None and t.status in ("finished", "pruned")]
    if not ok:
        return None
    return min(ok, key=lambda t: (best_first(t.best_value, mode), t.number))  # the earlier of equals


def objective_values(t: TrialRecord, settings: Settings) -> list[float] | None:
    """The trial's objectives, all turned into "smaller is better"."""
    if t.best_value is None:
        return None
    vals = [best_first(t.best_value, settings.mode)]
    for o in settings.objectives:
        v = {"num_params": t.num_params, "latency_ms": t.latency_ms}[o]
        if v is None:
            return None
        vals.append(float(v) if EXTRA_OBJECTIVES[o] == "min" else -float(v))
    return vals


def pareto_front(trials: list[TrialRecord], settings: Settings) -> list[TrialRecord]:
    """Non-dominated trials over the metric and the extra objectives."""
    pts = [(t, objective_values(t, settings)) for t in trials if t.status in ("finished", "pruned")]
    pts = [(t, v) for t, v in pts if v is not None]
    front = []
    for t, v in pts:
        dominated = any(all(a <= b for a, b in zip(w, v)) and any(a < b for a, b in zip(w, v)) for _, w in pts)
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: t.number)


def matching_trial(trials: list[TrialRecord], params: dict[str, Any]) -> TrialRecord | None:
    """The first trial whose every sampled parameter equals ``params`` (which may also hold
    parameters of choices the trial did not pick)."""
    for t in trials:
        shared = [k for k in t.config if k in params]
        if shared and all(t.config[k] == params[k] for k in shared):
            return t
    return None

"""Ray Tune's ``OptunaSearch``, told what the early-stopping scheduler did.

Ray's searcher tells Optuna every trial as COMPLETE with its last reported value. Under
ASHA that is wrong twice for a model-based sampler: a trial stopped at its first rung is
recorded as a finished model with its epoch-2 score (fast starters look as good as models
trained to the end), and a finished trial is scored by its last epoch, not the best one,
which is the epoch the search keeps. Here a trial that ran fewer epochs than it planned
is told PRUNED (Optuna keeps its per-epoch values; TPE ranks it below the trials that
finished), and a finished one is told its best epoch's value.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search.optuna import OptunaSearch


class ScheduledOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells scheduler-stopped trials as PRUNED, finished ones by their best epoch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._best: dict[str, float] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        super().on_trial_result(trial_id, result)
        value = result.get(self.metric) if isinstance(self.metric, str) else None
        if isinstance(value, (int, float)) and math.isfinite(value):
            old = self._best.get(trial_id)
            better = old is None or (value > old if self.mode == "max" else value < old)
            self._best[trial_id] = value if better else old

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error and isinstance(self.metric, str):
            planned, done = result.get("planned_epochs"), result.get("training_iteration")
            if planned and done and done < planned:  # stopped early: Optuna marks a None value PRUNED
                result = {**result, self.metric: None}
            elif trial_id in self._best:
                result = {**result, self.metric: self._best[trial_id]}
        self._best.pop(trial_id, None)
        super().on_trial_complete(trial_id, result=result, error=error)

"""Early stopping inside a trial (``train.patience``): training ends once neither the
validation metric nor the validation loss has improved for ``patience`` epochs in a row, so a
trial trains until it converges rather than for a fixed number of epochs; ``train.epochs`` is
then only a ceiling.

Why the loss too: on a small validation split a score such as macro-F1 moves in steps and
often sits still for several epochs while a slowly learning model (a low learning rate, a
model still predicting the majority class) is improving; its validation loss is smooth and
shows it. An overfitting model's loss rises while its score stalls, so it still stops.

The weights the search keeps are the best epoch's: the trainable checkpoints whenever the
metric improves (``search/trainable.py``), so the epochs after the best one cost time but
never replace it. A trial that stopped here *converged*; it was not stopped by the scheduler
(not "pruned"), and the search tells the sampler its best value as a finished trial's.
"""

from __future__ import annotations

import math

from autofusion.models.build import FusionModel
from autofusion.train.loop import TrainingHook


class EarlyStopping(TrainingHook):
    """Stops training after ``patience`` epochs without an improvement of ``metric`` or of the loss.

    Args:
        patience: epochs without improvement tolerated (>= 1).
        metric: the validation metric to watch (``val_f1_macro``).
        mode: ``max`` or ``min``.
        min_delta: an improvement smaller than this (relative to the best value's size,
            at least this much absolute) does not count.
        loss: the validation loss, watched too (an improvement of either one resets the
            count); None watches the metric alone.

    :meth:`observe` may be called before :meth:`epoch_end` for the same epoch (the trainable
    does, to tell its last report apart); the decision is made once per epoch.
    """

    def __init__(self, patience: int, metric: str, mode: str, min_delta: float = 1e-4,
                 loss: str | None = "val_loss") -> None:
        self.patience = max(1, int(patience))
        self.watched = {metric: mode, **({loss: "min"} if loss and loss != metric else {})}
        self.min_delta = min_delta
        self.best: dict[str, float] = {}
        self.last_improved = 0  # the last epoch where a watched value improved
        self.stopped_epoch: int | None = None
        self._decided: dict[int, bool] = {}

    def _improves(self, name: str, value: float) -> bool:
        best = self.best.get(name)
        if best is None:
            return True
        margin = self.min_delta * max(1.0, abs(best))
        return value > best + margin if self.watched[name] == "max" else value < best - margin

    def observe(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Records ``epoch``'s metrics once; returns whether training should stop after it."""
        if epoch in self._decided:
            return self._decided[epoch]
        for name in self.watched:
            value = metrics.get(name)
            if value is not None and math.isfinite(value) and self._improves(name, value):
                self.best[name] = float(value)
                self.last_improved = epoch
        stop = epoch - self.last_improved >= self.patience
        self._decided[epoch] = stop
        if stop and self.stopped_epoch is None:
            self.stopped_epoch = epoch
        return stop

    def epoch_end(self, epoch: int, metrics: dict[str, float], model: FusionModel) -> bool:
        return self.observe(epoch, metrics)


def stopping_hook(hooks: list[TrainingHook]) -> EarlyStopping | None:
    """The trial's early-stopping hook, if its configuration asked for one."""
    return next((h for h in hooks if isinstance(h, EarlyStopping)), None)

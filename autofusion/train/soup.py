"""Checkpoint averaging (``train.soup_k``): a "model soup" (Wortsman et al. 2022) of one
trial's best epochs.

The weights of the ``k`` epochs best on the validation metric are kept in memory (on the
CPU); their average is evaluated on validation and kept only when it beats the best single
epoch. Floating-point tensors are averaged (BatchNorm statistics included); integer buffers
(BatchNorm's batch counters) come from the best epoch.

Two ways to drive it:

- as a plain hook of ``fit``: every epoch's weights are offered in ``epoch_end``; ``finish``
  brews the soup once, loads it into the model when kept, and adds ``soup_kept`` and
  ``soup_<val metric>`` to the last epoch's metrics;
- from the search's trainable, with :meth:`SoupHook.offer` before each report: the soup of
  the best epochs so far is brewed whenever they change, so the checkpoint the search keeps
  can be the soup. Ray Tune's ASHA stops a trial at its last report (``max_t``) and the
  trial's thread never returns from it, so nothing after that report, ``finish`` included,
  would run there.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from autofusion.data.prepare import PreparedData
from autofusion.metrics import best_first, better
from autofusion.models.build import FusionModel
from autofusion.models.losses import build_loss
from autofusion.train.loop import TrainingHook, evaluate
from autofusion.trial import TrialConfig

State = dict[str, Tensor]


@dataclass(frozen=True)
class Soup:
    """An averaged model: its weights (CPU), validation metrics, the epochs averaged, and
    whether it beat the best of them on the metric."""

    state: State
    metrics: dict[str, float]
    value: float
    epochs: tuple[int, ...]
    kept: bool

    def logged(self) -> dict[str, float]:
        """``soup_kept`` (1 or 0) and the soup's validation metrics as ``soup_val_...``."""
        return {"soup_kept": float(self.kept), **{f"soup_{k}": v for k, v in self.metrics.items()}}


def average_states(states: Sequence[State]) -> State:
    """The mean of floating-point tensors over ``states``; other tensors from the first state."""
    out: State = {}
    for key, first in states[0].items():
        if torch.is_floating_point(first):
            out[key] = torch.stack([s[key].float() for s in states]).mean(dim=0).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def cpu_state(model: torch.nn.Module) -> State:
    """A copy of the model's state dict on the CPU (never sharing memory with the model)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class SoupHook(TrainingHook):
    """Keeps the ``k`` best epochs' weights by ``metric`` and averages them (see the module doc).

    Args:
        k: how many of the best epochs to average (>= 2).
        metric: the validation metric that ranks epochs and judges the soup (``val_accuracy``).
        mode: ``max`` or ``min``.
    """

    def __init__(self, k: int, metric: str, mode: str) -> None:
        self.k, self.metric, self.mode = int(k), metric, mode
        self.pool: list[tuple[float, int, State]] = []  # (value, epoch, weights), best first
        self.soup: Soup | None = None
        self._seen: set[int] = set()
        self._stale = False  # the pool changed since the soup was brewed
        self._data: PreparedData | None = None
        self._loss = None

    def start(self, model: FusionModel, opt: torch.optim.Optimizer, data: PreparedData, tc: TrialConfig) -> None:
        meta = data.meta
        self._data = data
        self._loss = build_loss(tc.loss.name, tc.loss.params, meta.target, meta.class_counts)

    def add(self, epoch: int, metrics: dict[str, float], model: FusionModel) -> bool:
        """Offers an epoch's weights to the pool (once per epoch); returns whether they entered it."""
        value = metrics.get(self.metric)
        if epoch in self._seen or value is None or not math.isfinite(value):
            return False
        self._seen.add(epoch)
        if len(self.pool) >= self.k and not better(value, self.pool[-1][0], self.mode):
            return False
        self.pool.append((float(value), epoch, cpu_state(model)))
        # best first; among equals the earlier epoch stays ahead
        self.pool.sort(key=lambda e: (best_first(e[0], self.mode), e[1]))
        del self.pool[self.k:]
        self._stale = True
        return True

    def brew(self, model: FusionModel) -> Soup | None:
        """Averages the pool (two epochs at least) and evaluates the average on validation."""
        self._stale = False
        if len(self.pool) < 2 or self._data is None:
            return self.soup
        state = average_states([s for _, _, s in self.pool])
        device = next(model.parameters()).device
        soup_model = copy.deepcopy(model)
        soup_model.load_state_dict(state)
        metrics = evaluate(soup_model, self._data, self._data.indices(1), device, prefix="val", loss_fn=self._loss)
        del soup_model
        value = metrics.get(self.metric, float("nan"))
        kept = math.isfinite(value) and better(value, self.pool[0][0], self.mode)
        self.soup = Soup(state, metrics, value, tuple(sorted(e for _, e, _ in self.pool)), kept)
        return self.soup

    def offer(self, epoch: int, metrics: dict[str, float], model: FusionModel) -> Soup | None:
        """For a caller that reports each epoch: adds the epoch and re-brews when the best epochs
        changed; returns the latest soup (None before two epochs are in the pool)."""
        if self.add(epoch, metrics, model):
            self.brew(model)
        return self.soup

    def epoch_end(self, epoch: int, metrics: dict[str, float], model: FusionModel) -> bool:
        self.add(epoch, metrics, model)
        return False

    def finish(self, model: FusionModel, history: list[dict[str, float]]) -> None:
        if self._stale:
            self.brew(model)
        if self.soup is None:
            return
        if self.soup.kept:
            model.load_state_dict(self.soup.state)
        if history:
            history[-1].update(self.soup.logged())


def soup_hook(hooks: Sequence[TrainingHook]) -> SoupHook | None:
    """The trial's checkpoint-averaging hook among ``hooks``, if it has one."""
    return next((h for h in hooks if isinstance(h, SoupHook)), None)

"""Greedy ensemble selection over the finished trials (Caruana et al. 2004, "Ensemble
selection from libraries of models"), as AutoGluon's ``EnsembleSelection`` does it.

Every trial keeps its best epoch's validation outputs beside its checkpoint
(:data:`VAL_OUTPUTS`: probabilities, or regression outputs; written by the trainable). Each
round adds, with replacement, the trial whose addition gives the averaged outputs the best
validation metric; after a few dozen rounds the ensemble is cut back to the round that
scored best, and each member's weight is how often it was picked over the rounds kept.

Ties, as in AutoGluon: candidates within a relative 1e-12 of the best count as tied; among
them a trial already in the ensemble is preferred (fewer members for the same score), then
the lower log loss (AutoGluon's ``second_metric`` tie-breaker, which matters for accuracy
and F1: on a small validation split many additions leave them unchanged), then the trial
ranked better on its own. No bagging: AutoGluon leaves it off too, and a search has tens of
trials, not the thousands bagging guards against overfitting to.

The ensemble is kept only when it beats the search's best trial on validation; the first
round picks the best single trial, so the cut-back ensemble is never worse than it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from autofusion.data.prepare import PreparedData
from autofusion.data.splits import VAL
from autofusion.metrics import best_first, better
from autofusion.search.records import Settings, TrialRecord
from autofusion.train.metrics import output_metrics

VAL_OUTPUTS = "val_outputs.npy"  # beside a trial checkpoint's model.pt
ROUNDS = 25  # AutoGluon's default ensemble_size
MAX_CANDIDATES = 50  # the best trials considered (auto-sklearn's ensemble_nbest)
EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before logs

Score = Callable[[np.ndarray], tuple[float, float]]  # averaged outputs -> (regret, tie-break regret)


@dataclass(frozen=True)
class Selection:
    """What greedy selection chose: candidate index -> times picked, and the regret after
    each round kept (``trajectory[-1]`` is the ensemble's)."""

    counts: dict[int, int]
    trajectory: list[float]

    @property
    def weights(self) -> dict[int, float]:
        """Each picked candidate's share of the picks (they sum to 1)."""
        total = sum(self.counts.values())
        return {i: c / total for i, c in self.counts.items()}


@dataclass
class EnsembleChoice:
    """An ensemble of trials and how it did on validation against the best single trial."""

    members: list[TrialRecord]
    weights: list[float]
    val_metrics: dict[str, float]
    best_val_metrics: dict[str, float]  # the best trial's, computed the same way
    metric: str
    mode: str
    rounds: int
    candidates: int
    trajectory: list[float] = field(default_factory=list)

    @property
    def value(self) -> float:
        return self.val_metrics[self.metric]

    @property
    def best_value(self) -> float:
        return self.best_val_metrics[self.metric]

    @property
    def kept(self) -> bool:
        """Two members or more, and strictly better than the best trial on the metric."""
        if len(self.members) < 2 or not (math.isfinite(self.value) and math.isfinite(self.best_value)):
            return False
        return better(self.value, self.best_value + (1e-9 if self.mode == "max" else -1e-9), self.mode)


def probabilities(out: torch.Tensor, target: str) -> np.ndarray:
    """A model's raw outputs as what an ensemble averages: class probabilities (softmax),
    label probabilities (sigmoid), or the regression outputs themselves."""
    out = out.detach().float().cpu()
    if target == "classification":
        out = torch.softmax(out, dim=-1)
    elif target == "multilabel":
        out = torch.sigmoid(out)
    return out.numpy().astype(np.float32)


def as_outputs(avg: np.ndarray, target: str) -> torch.Tensor:
    """Averaged outputs back to raw outputs that the metrics and losses take (logits whose
    softmax or sigmoid gives ``avg``)."""
    t = torch.from_numpy(np.asarray(avg, dtype=np.float32))
    if target == "classification":
        return torch.log(t.clamp(EPS, 1.0))
    if target == "multilabel":
        t = t.clamp(EPS, 1 - EPS)
        return torch.log(t) - torch.log1p(-t)
    return t


def greedy_selection(preds: Sequence[np.ndarray], score: Score, rounds: int = ROUNDS) -> Selection:
    """Caruana's forward selection with replacement over ``preds`` (candidates best first).

    Args:
        preds: each candidate's validation outputs, all the same shape.
        score: averaged outputs -> (regret, tie-break regret); lower is better.
        rounds: picks at most; the ensemble is cut back to the best round.
    """
    if not preds:
        raise ValueError("no candidates to select from")
    total = np.zeros_like(np.asarray(preds[0], dtype=np.float64))
    picks: list[int] = []
    trajectory: list[float] = []
    for r in range(rounds):
        scored = [score((total + p) / (r + 1)) for p in preds]
        regrets = np.array([s[0] if math.isfinite(s[0]) else math.inf for s in scored])
        if not np.isfinite(regrets).any():
            break
        tied = np.flatnonzero(np.isclose(regrets, regrets.min(), rtol=1e-12, atol=0))
        used = [i for i in tied if i in picks]
        tied = used or list(tied)
        pick = min(tied, key=lambda i: (scored[i][1] if math.isfinite(scored[i][1]) else math.inf, i))
        picks.append(int(pick))
        trajectory.append(float(regrets[pick]))
        total += preds[pick]
        if len(preds) == 1:
            break
    if not picks:
        raise ValueError("no candidate has a finite score")
    keep = int(np.argmin(trajectory)) + 1  # the first round with the lowest regret
    return Selection(dict(Counter(picks[:keep])), trajectory[:keep])


def metric_score(y: torch.Tensor, data: PreparedData, metric: str, mode: str) -> Score:
    """The validation ``metric`` of averaged outputs as a regret, with the default loss
    (log loss, or MSE) as the tie-breaker."""
    target = data.meta.target

    def score(avg: np.ndarray) -> tuple[float, float]:
        m = output_metrics(as_outputs(avg, target), y, data.meta, prefix="val")
        value = m.get(metric, math.nan)
        return best_first(value, mode), m.get("val_loss", math.nan)

    return score


def val_outputs(trial: TrialRecord) -> np.ndarray | None:
    """The validation outputs a trial saved beside its checkpoint (None if it has none)."""
    if not trial.checkpoint:
        return None
    path = Path(trial.checkpoint) / VAL_OUTPUTS
    try:
        return np.load(path, allow_pickle=False) if path.is_file() else None
    except (OSError, ValueError):
        return None


def with_outputs(trials: list[TrialRecord], best: TrialRecord, rows: int, mode: str,
                 limit: int = MAX_CANDIDATES) -> list[tuple[TrialRecord, np.ndarray]]:
    """``best``, then the other finished and pruned trials with a finite value, best first,
    each with its saved validation outputs (float64): at most ``limit`` of them are read, and
    those without usable outputs (none saved, not ``rows`` long, not finite) are left out.
    Empty when ``best`` is not among those trials."""
    ok = [t for t in trials if t.status in ("finished", "pruned") and t.best_value is not None
          and math.isfinite(t.best_value)]
    if best not in ok:
        return []
    ok.sort(key=lambda t: (best_first(t.best_value, mode), t.number))
    pool: list[tuple[TrialRecord, np.ndarray]] = []
    for t in [best, *(t for t in ok if t is not best)][:limit]:
        p = val_outputs(t)
        if p is not None and len(p) == rows and np.isfinite(p).all():
            pool.append((t, p.astype(np.float64)))
    return pool


def choose_ensemble(trials: list[TrialRecord], best: TrialRecord, data: PreparedData, settings: Settings,
                    rounds: int = ROUNDS) -> EnsembleChoice | None:
    """Greedy selection over the finished and pruned trials' validation outputs; None when
    fewer than two trials have them or the metric cannot be computed from outputs."""
    idx = data.indices(VAL)
    y = torch.from_numpy(data.targets[idx])
    metric, mode = settings.metric, settings.mode
    pool = with_outputs(trials, best, len(idx), mode)
    if len(pool) < 2 or pool[0][0] is not best:
        return None
    target = data.meta.target
    best_metrics = output_metrics(as_outputs(pool[0][1], target), y, data.meta, prefix="val")
    if metric not in best_metrics:
        return None
    sel = greedy_selection([p for _, p in pool], metric_score(y, data, metric, mode), rounds)
    order = sorted(sel.counts, key=lambda i: (-sel.counts[i], i))
    weights = sel.weights
    avg = sum(weights[i] * pool[i][1] for i in order)
    return EnsembleChoice(
        members=[pool[i][0] for i in order], weights=[weights[i] for i in order],
        val_metrics=output_metrics(as_outputs(avg, target), y, data.meta, prefix="val"),
        best_val_metrics=best_metrics, metric=metric, mode=mode, rounds=rounds, candidates=len(pool),
        trajectory=sel.trajectory,
    )

"""How well the validation split tells the trials apart: a paired bootstrap over its rows.

A search ranks its trials on one validation split. On a small one (a few hundred rows) the
metric of a single model moves by several points from one draw of rows to the next, and the
best trial's lead over the next ones can be smaller than that: another validation split, or
the test split, may rank them the other way. This module says so after the search, from the
validation outputs every trial saved beside its checkpoint (nothing is retrained, nothing is
evaluated on test):

- the best trial's 95% percentile interval of the metric over ``RESAMPLES`` resamples of the
  validation rows (with replacement, as many as there are);
- for every other trial with saved outputs, the share of the same resamples on which the
  best trial scores better (ties count half). The comparison is paired, since two trials err
  on many of the same rows; a trial the best one beats on fewer than ``SURE`` of the
  resamples is *not told apart* from it.

The resamples are seeded: the same outputs give the same figures.
"""

from __future__ import annotations

import numpy as np
import torch

from autofusion.data.prepare import DataMeta, PreparedData
from autofusion.data.splits import VAL
from autofusion.metrics import class_keys, val_metrics
from autofusion.search.ensemble import MAX_CANDIDATES, as_outputs, with_outputs
from autofusion.search.records import SURE, Settings, TrialRecord, ValidationNoise
from autofusion.train.metrics import count_scores, output_metrics

RESAMPLES = 500
SLOW = (100, 10)  # resamples and trials compared for a metric computed one resample at a time


def resampled(outputs: np.ndarray, y: torch.Tensor, draws: torch.Tensor, meta: DataMeta, metric: str) -> np.ndarray:
    """The search metric (``val_*``) of saved outputs on each resample of rows (``draws``:
    ``[R, n]`` row indices), batched: per-row losses averaged, confusion matrices counted
    per resample. Metrics without a batched form (multi-label scores, ROC-AUC and PR-AUC) are
    computed one resample at a time."""
    name = metric.removeprefix("val_")
    target = meta.target
    out = as_outputs(outputs, target)
    if not batched(meta, metric):
        return np.array([output_metrics(out[d], y[d], meta, prefix="val")[metric] for d in draws])
    if name == "loss" or name == "log_loss":  # the mean of per-row losses (log loss: the default loss's)
        return _row_losses(out, y, target)[draws].mean(dim=1).numpy()
    if target == "classification":
        k = meta.num_outputs
        cells = y.long()[draws] * k + out.argmax(dim=-1)[draws]
        flat = (torch.arange(len(draws)).unsqueeze(1) * k * k + cells).flatten()
        scores = count_scores(torch.bincount(flat, minlength=len(draws) * k * k).reshape(len(draws), k, k))
        kind, _, key = name.partition(".")
        if key:
            return scores[kind][:, class_keys(meta.classes).index(key)].numpy()
        return scores[name].numpy()
    err, yd = (out - y)[draws].flatten(1), y[draws].flatten(1)  # regression: rmse, mae, r2
    if name == "rmse":
        return err.pow(2).mean(dim=1).sqrt().numpy()
    if name == "mae":
        return err.abs().mean(dim=1).numpy()
    total = (yd - yd.mean(dim=1, keepdim=True)).pow(2).sum(dim=1)
    return (1 - err.pow(2).sum(dim=1) / total).numpy()


def batched(meta: DataMeta, metric: str) -> bool:
    """Whether :func:`resampled` scores all resamples at once for this metric (multi-label
    scores are computed one resample at a time, some milliseconds each)."""
    name = metric.removeprefix("val_")
    if meta.target == "classification":
        return name not in ("roc_auc", "pr_auc")  # rank-based: one resample at a time
    return name == "loss" or (meta.target == "regression" and name in ("rmse", "mae", "r2"))


def _row_losses(out: torch.Tensor, y: torch.Tensor, target: str) -> torch.Tensor:
    """Each row's default loss (:data:`autofusion.metrics.DEFAULT_LOSS`): their mean is
    ``val_loss``."""
    import torch.nn.functional as F

    if target == "classification":
        return F.cross_entropy(out, y.long(), reduction="none")
    if target == "multilabel":
        return F.binary_cross_entropy_with_logits(out, y.float(), reduction="none").mean(dim=1)
    return (out - y).pow(2).flatten(1).mean(dim=1)


def validation_noise(trials: list[TrialRecord], best: TrialRecord, data: PreparedData, settings: Settings,
                     resamples: int = RESAMPLES, seed: int = 0) -> ValidationNoise | None:
    """The paired bootstrap of the best trial against the others (see the module doc); None
    without a validation split of two rows or more, without the best trial's saved outputs,
    or for a metric that is not one of the target kind's validation metrics."""
    idx = data.indices(VAL)
    if len(idx) < 2 or settings.metric not in val_metrics(data.meta.target):
        return None
    most = MAX_CANDIDATES
    if not batched(data.meta, settings.metric):
        resamples, most = min(resamples, SLOW[0]), SLOW[1]
    pool = with_outputs(trials, best, len(idx), settings.mode, limit=most + 1)
    if not pool or pool[0][0] is not best:
        return None
    y = torch.from_numpy(data.targets[idx])
    draws = torch.from_numpy(np.random.default_rng(seed).integers(0, len(idx), size=(resamples, len(idx))))

    def boot(outputs: np.ndarray) -> np.ndarray:
        return resampled(outputs, y, draws, data.meta, settings.metric)

    mine = boot(pool[0][1])
    if not np.isfinite(mine).all():
        return None
    sign = 1.0 if settings.mode == "max" else -1.0
    shares: dict[int, float] = {}
    for t, p in pool[1:]:
        diff = sign * (mine - boot(p))
        shares[t.number] = float((diff > 0).mean() + 0.5 * (diff == 0).mean())
    tied = sorted((n for n, s in shares.items() if s < SURE), key=lambda n: (shares[n], n))
    low, high = np.percentile(mine, [2.5, 97.5])
    return ValidationNoise(rows=len(idx), resamples=resamples, low=float(low), high=float(high),
                           compared=len(shares), tied=tied, shares=shares)

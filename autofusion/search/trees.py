"""The trees member's stage of a search: after the fusion trials, LightGBM is tuned on the
same validation rows and metric (``autofusion.train.trees``) on the driver, over the tabular
fields and the features the search already built (TF-IDF, pixel and MFCC statistics); the
best configuration becomes one more trial of the search: a child run with its parameters,
validation metrics and tuning table, a checkpoint folder (the booster as text, the feature
layout, its validation outputs), so the best-trial choice, the validation-noise bootstrap and
the greedy ensemble weigh it beside the neural trials, and a search whose model it is (alone
or in the ensemble) serves it on raw rows.

It runs with ``search.trees`` on (the default; ``--no-trees`` turns it off) whenever an input
has such features and the target is not multi-label; a resumed search keeps the one it had.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from autofusion.data.splits import TRAIN
from autofusion.models.trees import KIND
from autofusion.search.ensemble import VAL_OUTPUTS
from autofusion.search.records import TrialRecord

CONFIGS = 12  # LightGBM configurations tried at most
TRIALS_SHARE = 0.25  # its tuning takes at most this share of the trials' wall time ...
MIN_SECONDS, MAX_SECONDS = 5.0, 120.0  # ... within these bounds (LightGBM's defaults are always fitted)
MANY_ROWS = 20_000  # training rows from which LightGBM gets more than one thread


def run_trees(ctx: Any, writer: Any, trials_seconds: float) -> TrialRecord | None:
    """Tunes the trees member, for at most ``TRIALS_SHARE`` of the trials' wall time
    (``trials_seconds``), and adds it to ``ctx.records`` as a finished trial (logged as a child
    run of the search); the record, or None when there is nothing for trees to read."""
    from autofusion.train.trees import tune_trees

    done = next((r for r in ctx.records.values() if r.kind == KIND), None)
    if done is not None:  # a resumed search that had it
        return done
    s = ctx.settings
    budget = min(MAX_SECONDS, max(MIN_SECONDS, TRIALS_SHARE * trials_seconds))
    res = tune_trees(ctx.data, s.metric, s.mode, configs=CONFIGS, seconds=budget, seed=s.seed,
                     threads=tree_threads(len(ctx.data.indices(TRAIN))))
    if res.best is None:
        return None
    best = res.best
    folder = Path(ctx.folder) / "trees"
    best.model.save(folder)
    np.save(folder / VAL_OUTPUTS, best.val_outputs)
    number = max((r.number for r in ctx.records.values()), default=0) + 1
    config = tree_config(best.params, ctx.data.meta.input_specs, best.model.keys)
    rec = TrialRecord(f"trees-{ctx.parent}", number, config, status="finished", planned_epochs=1,
                      history=[{**best.val_metrics, "epoch_seconds": best.seconds}], best_epoch=1,
                      best_value=best.val_metrics.get(s.metric), seconds=sum(t["seconds"] for t in res.tried),
                      checkpoint=str(folder), stop_reason="converged", kind=KIND)
    tags = {"autofusion.trial_id": rec.trial_id, "autofusion.trial_number": str(number),
            "autofusion.model_kind": KIND, "autofusion.config": json.dumps(config, default=str),
            "autofusion.summary": f"{KIND} over {', '.join(best.model.keys)}", "autofusion.planned_epochs": "1"}
    writer.start_trial(rec.trial_id, f"trial-{number:03d}-{KIND}", config, tags)
    writer.log_metrics(rec.trial_id, {**best.val_metrics, "rounds": best.rounds, "configs_tried": len(res.tried),
                                      "epoch_seconds": best.seconds}, step=1)
    writer.log_file(rec.trial_id, "trees/tuning.json", json.dumps(res.tried, indent=1, default=str).encode())
    if rec.best_value is not None:
        writer.log_metrics(rec.trial_id, {f"best_{s.metric}": rec.best_value})
    writer.end_trial(rec.trial_id, "finished", {"autofusion.epochs_run": "1", "autofusion.best_epoch": "1",
                                                 "autofusion.stop_reason": "converged",
                                                 "autofusion.checkpoint": str(folder)})
    ctx.records[rec.trial_id] = rec
    return rec


def tree_threads(rows: int) -> int:
    """LightGBM's threads: one below ``MANY_ROWS`` training rows (its OpenMP threads wait for
    each other on every split: on 680 rows, 2 threads of 2 busy cores took 50-67 s where 1
    took 5 s), up to four above."""
    return 1 if rows < MANY_ROWS else max(1, min(4, os.cpu_count() or 1))


def tree_config(params: dict[str, Any], specs: list[Any], keys: dict[str, str | None]) -> dict[str, Any]:
    """The trees member's configuration as a trial's flat parameters: ``fusion.type`` and every
    modality's encoder read ``lightgbm`` (so tables show what it is), its LightGBM parameters
    as ``lightgbm.<name>``, and which features each input gave it."""
    modalities = list(dict.fromkeys(s.modality for s in specs))
    return {"model.type": KIND, "fusion.type": KIND, **{f"encoder.{m}": KIND for m in modalities},
            **{f"{KIND}.{k}": v for k, v in params.items()},
            **{f"{KIND}.input.{name}": key or "fields" for name, key in keys.items()}}


def is_trees(rec: TrialRecord) -> bool:
    """Whether a trial is the trees member."""
    return rec.kind == KIND

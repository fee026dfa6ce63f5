"""The trees member's stage of a search: after the fusion trials, LightGBM is tuned on the
same validation rows and metric (``autofusion.train.trees``) on the driver, over the tabular
fields and the features the search already built (TF-IDF, pixel and MFCC statistics); the
best configuration becomes one more trial of the search: a child run with its parameters,
validation metrics and tuning table, a checkpoint folder (the booster as text, the feature
layout, its validation outputs), so the best-trial choice, the validation-noise bootstrap and
the greedy ensemble weigh it beside the neural trials, and a search whose model it is (alone
or in the ensemble) serves it on raw rows. Then the linear members (``models.linear``:
logistic regression, or ridge, over the same row unreduced; one over every input, then one per
modality alone when there are several) the same way, each at a few strengths: seconds.

They run with ``search.trees`` on (the default; ``--no-trees`` turns both off) whenever an
input has such features and the target is not multi-label; a resumed search keeps the ones it
had.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autofusion.data.splits import TRAIN
from autofusion.models.extractors import input_key
from autofusion.models.linear import LINEAR
from autofusion.models.trees import KIND, ROW_MODELS
from autofusion.search.ensemble import VAL_OUTPUTS
from autofusion.search.progress import say
from autofusion.search.records import TrialRecord

CONFIGS = 12  # LightGBM configurations tried at most
TRIALS_SHARE = 0.25  # its tuning takes at most this share of the trials' wall time ...
MIN_SECONDS, MAX_SECONDS = 5.0, 120.0  # ... within these bounds (LightGBM's defaults are always fitted)
MANY_ROWS = 20_000  # training rows from which LightGBM gets more than one thread


def run_trees(ctx: Any, writer: Any, trials_seconds: float) -> list[TrialRecord]:
    """Tunes the trees member, then the linear members, each for at most ``TRIALS_SHARE`` of
    the trials' wall time (``trials_seconds``, within ``MIN_SECONDS``-``MAX_SECONDS``; a
    linear member's 8 fits take seconds on small data), and adds each to ``ctx.records``
    as a finished trial (logged as a child run of the search); their records (none when
    nothing can be read as a feature row)."""
    from autofusion.train.trees import linear_inputs

    budget = min(MAX_SECONDS, max(MIN_SECONDS, TRIALS_SHARE * trials_seconds))  # each member's
    members = [(KIND, "all"), *((LINEAR, i) for i in linear_inputs(ctx.data))]
    done = {m: next((r for r in ctx.records.values() if r.kind == m[0] and (
        m[0] == KIND or r.config.get(f"{LINEAR}.inputs", "all") == m[1])), None) for m in members}
    todo = [m for m in members if done[m] is None]  # a resumed search keeps the ones it had
    out = []
    # The trials are over and their cores idle: the members are tuned at once (LightGBM and
    # scikit-learn release the GIL while they fit), and logged one after another, in order.
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1)))
    try:
        tuning = {m: pool.submit(_tune, ctx, *m, budget) for m in todo}
        for m in members:
            if done[m] is not None:
                out.append(done[m])
                continue
            try:
                res = tuning[m].result()
            except Exception as exc:  # noqa: BLE001 - a member that cannot be fitted: the search goes on without it
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                say(f"The {m[0]} member over {m[1]} inputs could not be fitted on {len(ctx.data.indices(TRAIN))} "
                    f"training rows ({type(exc).__name__}: {first}); the search goes on without it",
                    ctx.opts.quiet, ctx.console)
                continue
            if res.best is not None:
                out.append(_add_member(ctx, writer, res))
    finally:  # Ctrl-C does not wait for the other members' loops (a process ending now ends them)
        pool.shutdown(wait=False, cancel_futures=True)
    return out


def _tune(ctx: Any, kind: str, inputs: str, seconds: float) -> Any:
    """One member's tuning loop (``train/trees.py``) over ``inputs``, for at most ``seconds``."""
    from autofusion.train.trees import tune_linear, tune_trees

    s = ctx.settings
    if kind == KIND:
        return tune_trees(ctx.data, s.metric, s.mode, configs=CONFIGS, seconds=seconds, seed=s.seed,
                          threads=tree_threads(len(ctx.data.indices(TRAIN))))
    return tune_linear(ctx.data, s.metric, s.mode, seed=s.seed, seconds=seconds, inputs=inputs)


def _add_member(ctx: Any, writer: Any, res: Any) -> TrialRecord:
    """The best fit of a tuning loop as one more finished trial: its checkpoint folder, its
    record and its child run (parameters, validation metrics, the tuning table)."""
    s, best = ctx.settings, res.best
    kind, inputs = best.model.kind, best.params.get("inputs", "all")
    # folders and ids: the trees member's as before the linear ones; a linear member's by what it reads
    name = "trees" if kind == KIND else kind if inputs == "all" else f"{kind}-{inputs}"
    folder = Path(ctx.folder) / name
    best.model.save(folder)
    np.save(folder / VAL_OUTPUTS, best.val_outputs)
    number = max((r.number for r in ctx.records.values()), default=0) + 1
    config = tree_config(best.params, ctx.data.meta.input_specs, best.model.keys, kind, best.model.embeddings)
    rec = TrialRecord(f"{name}-{ctx.parent}", number, config, status="finished", planned_epochs=1,
                      history=[{**best.val_metrics, "epoch_seconds": best.seconds}], best_epoch=1,
                      best_value=best.val_metrics.get(s.metric), seconds=sum(t["seconds"] for t in res.tried),
                      checkpoint=str(folder), stop_reason="converged", kind=kind)
    tags = {"autofusion.trial_id": rec.trial_id, "autofusion.trial_number": str(number),
            "autofusion.model_kind": kind, "autofusion.config": json.dumps(config, default=str),
            "autofusion.summary": f"{kind} over {', '.join(best.model.inputs)}{embedded_note(best.model.embeddings)}",
            "autofusion.planned_epochs": "1"}
    writer.start_trial(rec.trial_id, f"trial-{number:03d}-{kind}", config, tags)
    writer.log_metrics(rec.trial_id, {**best.val_metrics, "rounds": best.rounds, "configs_tried": len(res.tried),
                                      "epoch_seconds": best.seconds}, step=1)
    writer.log_file(rec.trial_id, f"{name}/tuning.json", json.dumps(res.tried, indent=1, default=str).encode())
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


def tree_config(params: dict[str, Any], specs: list[Any], keys: dict[str, str | None],
                kind: str = KIND, embeddings: dict[str, str] | None = None) -> dict[str, Any]:
    """A row member's configuration as a trial's flat parameters: ``fusion.type`` and the
    encoder of every modality it reads are its kind (``lightgbm``, ``linear``: so tables show
    what it is; ``-`` for a modality it leaves out), its parameters as ``<kind>.<name>``, and
    which features each input gave it (``embeddings``: the pretrained encoders whose embedding
    of an input it reads)."""
    embeddings = embeddings or {}
    modalities = list(dict.fromkeys(s.modality for s in specs))
    read = {s.modality for s in specs if s.name in keys or s.name in embeddings}
    return {"model.type": kind, "fusion.type": kind,
            **{f"encoder.{m}": kind if m in read else "-" for m in modalities},
            **{f"{kind}.{k}": v for k, v in params.items() if k != "model"},
            **{f"{kind}.input.{name}": key or "fields" for name, key in keys.items()},
            **{f"{kind}.embedding.{name}": input_key(key) for name, key in embeddings.items()}}


def embedded_note(embeddings: dict[str, str]) -> str:
    """`` (+ hf_text embeddings)``: the pretrained encoders a row member reads the embeddings of."""
    names = sorted({input_key(key).rsplit("-", 1)[0] for key in embeddings.values()})
    return f" (+ {', '.join(names)} embeddings)" if names else ""


def is_trees(rec: TrialRecord) -> bool:
    """Whether a trial is one of the members over a feature row (LightGBM, linear), fitted
    on the driver after the trials rather than sampled from the space."""
    return rec.kind in ROW_MODELS

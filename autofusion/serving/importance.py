"""Which input mattered: per-input importance of a served model on labelled rows.

For each input of the model's request (each column of a multi-column modality: ``frontal``,
``kitchen``; a table's fields as one input and each field on its own, ``tabular.area``), the
drop in a metric when the input is taken away, two standard ways (``serving.perturb``):

* **removal**: left out as the model reads a missing input (the way it handles an empty cell);
* **permutation**: its values shuffled across the rows (Breiman 2001; scikit-learn's
  ``permutation_importance``), which keeps the input's distribution but breaks its link to
  the label.

A drop is the metric with every input minus the metric without this one, its sign flipped for
metrics where lower is better, so a positive drop always means "the model needs it". Its 95%
interval comes from a paired bootstrap over the rows, as the validation-noise line's
(``search/noise.py``: the same seeded resamples for the intact and the perturbed outputs,
their scores batched): an interval that covers zero means the rows cannot tell the input
from useless.

It works on any served model (a single model or an ensemble: anything with ``meta`` and
``outputs(df, cache, perturb)``): the intact pass decodes every file and runs every backbone
once into the request cache, and each perturbed pass reuses them, so a pass costs the light
part of the model only, plus what it must read anew from its changed cells (a field of a
joined text through its backbone), once for all the members of an ensemble
(``serving.perturb.pass_cache``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from autofusion.data.prepare import DataMeta
from autofusion.metrics import metric_mode, val_metrics
from autofusion.modalities import MODALITIES
from autofusion.search.noise import RESAMPLES, SLOW, batched, resampled
from autofusion.search.records import (
    PERMUTATION,
    REMOVAL,
    Drop,
    Importance,
    InputImportance,
)
from autofusion.serving.perturb import Perturbation


@dataclass(frozen=True)
class Target:
    """One thing taken away: a request input, or one field of a multi-column input."""

    name: str  # as reported: the input's name, or ``<input>.<field>``
    input: str
    columns: tuple[str, ...]
    field: bool = False


def targets(meta: DataMeta) -> list[Target]:
    """The request's inputs (a joined text is read from its columns' inputs) and the fields
    of each multi-column input, in the model's input order."""
    out: list[Target] = []
    for spec in meta.input_specs:
        if spec.joined:
            continue
        out.append(Target(spec.name, spec.name, (spec.name, *spec.columns)))
        if not getattr(MODALITIES.get(spec.modality), "one_input_per_column", True) and len(spec.columns) > 1:
            out.extend(Target(f"{spec.name}.{c}", spec.name, (c,), field=True) for c in spec.columns)
    return out


def scored_metric(metric: str, meta: DataMeta) -> str:
    """``metric`` (``f1_macro``, ``val_f1_macro`` or ``test_f1_macro``) as the validation metric
    name the bootstrap scores (``val_f1_macro``).

    Raises:
        ValueError: not a metric of the model's target kind (the message names the known ones).
    """
    bare = metric.split("_", 1)[1] if metric.startswith(("val_", "test_")) else metric
    known = val_metrics(meta.target)
    if f"val_{bare}" not in known:
        raise ValueError(f"metric {metric!r} does not score a {meta.target} model; known: "
                         f"{', '.join(m.removeprefix('val_') for m in known)}")
    return f"val_{bare}"


def input_importance(model: Any, frame: pd.DataFrame, y: np.ndarray, metric: str, *, split: str,
                     seed: int = 0, resamples: int = RESAMPLES) -> Importance:
    """The importance of every input of ``model`` on the labelled rows ``frame`` (see the module doc).

    Args:
        model: a served model (``FusionPyfunc``, ``EnsemblePyfunc``: an MLflow pyfunc's python model).
        frame: request rows, one column per request input (``serving.predict.request_frame``).
        y: the rows' targets encoded as the model learned them (class ids, multi-hot, values,
            log values for a log-scale regression).
        metric: what drops (``val_f1_macro``, ``test_rmse``, ``accuracy``): it is reported as given.
        split: what the rows are, for the report (``validation``, ``test``, a manifest's name).
        seed: the resamples' and the permutations' seed.
    """
    t0 = time.perf_counter()
    meta = model.meta
    scored = scored_metric(metric, meta)
    sign = 1.0 if metric_mode(scored) == "max" else -1.0
    n = len(frame)
    if not batched(meta, scored):  # scored one resample at a time
        resamples = min(resamples, SLOW[0])
    rng = np.random.default_rng(seed)
    # row 0 of the draws is every row once: the point estimate; the others are the bootstrap's
    draws = torch.cat([torch.arange(n).unsqueeze(0), torch.from_numpy(rng.integers(0, n, size=(resamples, n)))])
    yt = torch.from_numpy(np.asarray(y))

    def scores(outputs: np.ndarray) -> np.ndarray:
        return resampled(outputs, yt, draws, meta, scored)

    frame = frame.reset_index(drop=True)
    cache: dict[Any, Any] = {}
    base = scores(model.outputs(frame, cache))
    rows = []
    for t in targets(meta):
        drops = {}
        for kind, order in ((REMOVAL, None), (PERMUTATION, rng.permutation(n))):
            out = model.outputs(frame, cache, Perturbation(t.input, t.columns, kind, order, t.field))
            d = sign * (base - scores(out))
            low, high = np.nanpercentile(d[1:], [2.5, 97.5]) if np.isfinite(d[1:]).any() else (np.nan, np.nan)
            drops[kind] = Drop(float(d[0]), float(low), float(high))
        rows.append(InputImportance(t.name, drops[REMOVAL], drops[PERMUTATION]))
    rows.sort(key=lambda i: -i.removal.value if np.isfinite(i.removal.value) else np.inf)  # stable: input order on ties
    return Importance(metric=metric, split=split, rows=n, resamples=resamples, base=float(base[0]), inputs=rows,
                      seconds=time.perf_counter() - t0)

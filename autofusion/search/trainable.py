"""The Ray Tune trainable: one trial, inside a Ray actor.

It rebuilds the trial's configuration, builds the model, caps torch's threads at the
trial's CPUs and calls ``train.fit`` with a callback that reports every epoch to Tune. It
never touches MLflow: the driver's callback tracks what it reports.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from autofusion.data.prepare import PreparedData
from autofusion.data.splits import VAL
from autofusion.metrics import better
from autofusion.models.build import build_model, count_parameters
from autofusion.search.ensemble import VAL_OUTPUTS, probabilities
from autofusion.train.batches import pick_device
from autofusion.train.hooks import hooks_for
from autofusion.train.loop import fit, measure_latency, predict
from autofusion.train.soup import soup_hook
from autofusion.train.stopping import stopping_hook
from autofusion.trial import TrialConfig


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a search shares, passed once with the data."""

    modalities: list[str]
    max_epochs: int
    metric: str
    mode: str
    seed: int
    threads: int


def trial_seed(config: dict[str, Any], seed: int) -> int:
    """A seed that depends only on the configuration and the search seed (reproducible)."""
    blob = json.dumps({k: config[k] for k in sorted(config)}, default=str, sort_keys=True)
    return (zlib.crc32(blob.encode()) ^ (seed * 2654435761)) & 0x7FFFFFFF


def run_trial(config: dict[str, Any], data: PreparedData, ts: TrialSettings) -> None:
    """Ray Tune function trainable: builds the model, trains it, reports every epoch.

    A checkpoint (the state dict) is reported only when the validation metric improves,
    so the one Tune keeps is the trial's best epoch, or the soup of its best epochs when the
    trial averages them (``train.soup_k``) and the average is better still.
    """
    import resource  # Unix only, like the peak-memory figure it gives

    import torch
    from ray import tune

    torch.set_num_threads(ts.threads)
    seed = trial_seed(config, ts.seed)
    torch.manual_seed(seed)
    tc = TrialConfig.from_flat(config, ts.modalities, ts.max_epochs)
    model = build_model(tc, data.meta, layout="start")  # a frozen pretrained encoder: no backbone, cached outputs
    device = pick_device()
    extra = {"num_params": float(count_parameters(model)), "planned_epochs": float(tc.epochs)}
    best: list[float | None] = [None]
    hooks = hooks_for(tc, data, metric=ts.metric, mode=ts.mode)
    soup = soup_hook(hooks)
    stopper = stopping_hook(hooks)

    def on_epoch_end(epoch: int, metrics: dict[str, float], m: Any) -> None:
        if epoch == 1:
            extra["latency_ms"] = measure_latency(m, data, device)
        extra["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        if device.type == "cuda":
            extra["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        weights = m.fusion.input_weights() or {}
        out = {**metrics, **extra, **{f"fusion_weight.{k}": v for k, v in weights.items()}}
        if stopper is not None and stopper.observe(epoch, metrics) and epoch < tc.epochs:
            out["converged"] = 1.0  # the last report: early stopping ends it, no scheduler did (train/stopping.py)
        value = metrics.get(ts.metric)
        improved = better(value, best[0], ts.mode)
        state = m.state_dict() if improved else None
        best[0] = value if improved else best[0]
        if soup is not None:  # checkpoint soup: now, since a trial may never return from its last report
            state = _soup_checkpoint(soup.offer(epoch, metrics, m), out, state, best, ts.mode)
        if state is None:
            tune.report(out)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, os.path.join(tmp, "model.pt"))
            np.save(os.path.join(tmp, VAL_OUTPUTS), _val_outputs(m, state, data, device))  # for the ensemble
            tune.report(out, checkpoint=tune.Checkpoint.from_directory(tmp))

    fit(model, data, tc, device=device, seed=seed, on_epoch_end=on_epoch_end, hooks=hooks)


def _soup_checkpoint(brewed: Any, out: dict[str, float], state: Any, best: list[float | None], mode: str) -> Any:
    """The weights to checkpoint once the soup of the best epochs so far (``train/soup.py``)
    is known: the soup's when it is kept and beats every checkpoint so far, else ``state``.
    Adds ``soup_kept`` and the soup's validation metrics to ``out``."""
    if brewed is None:
        return state
    out.update(brewed.logged())
    if brewed.kept and better(brewed.value, best[0], mode):
        best[0] = brewed.value
        return brewed.state
    return state


def _val_outputs(m: Any, state: Any, data: PreparedData, device: Any) -> np.ndarray:
    """The validation outputs (probabilities, or regression outputs) of the weights being
    checkpointed: the model's own, or the soup's averaged ones."""
    model = m
    own = m.state_dict()
    if any(v.data_ptr() != own[k].data_ptr() for k, v in state.items() if k in own):  # the soup's weights
        model = copy.deepcopy(m)
        model.load_state_dict(state)
    out, _ = predict(model, data, data.indices(VAL), device)
    return probabilities(out, data.meta.target)

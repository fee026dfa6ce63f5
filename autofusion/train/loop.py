"""Training and evaluation of one model. Knows nothing of Ray or MLflow: ``fit`` calls
``on_epoch_end(epoch, metrics, model)`` after each epoch, and the caller decides what to
report or keep.

What a trial adds to plain training (early stopping, auxiliary losses, staged unfreezing,
checkpoint averaging) comes in as :class:`TrainingHook` s, each in its own module of this
package, so the loop itself stays short: set-up, one epoch (a loss and a step per batch),
validation and the report.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from autofusion.data.prepare import PreparedData
from autofusion.models.build import ForwardOut, FusionModel
from autofusion.models.losses import build_loss
from autofusion.train.batches import augment_batch, iter_batches
from autofusion.train.metrics import output_metrics
from autofusion.train.optim import build_optimizer, build_schedule
from autofusion.trial import TrialConfig, auto_batch_size

EpochCallback = Callable[[int, dict[str, float], FusionModel], None]


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingHook:
    """Something a trial adds to training. Every method has a do-nothing default.

    ``start`` sees the model, optimizer and data before the first epoch; ``loss_terms`` adds
    named loss terms for a batch (logged per epoch as ``train_<name>``); ``epoch_end`` sees
    the epoch's metrics and returns True to stop training; ``finish`` sees the model last.
    """

    def start(self, model: FusionModel, opt: torch.optim.Optimizer, data: PreparedData, tc: TrialConfig) -> None:
        pass

    def loss_terms(self, model: FusionModel, fwd: ForwardOut, y: Tensor, present: dict[str, Tensor]) -> dict[str, Tensor]:
        return {}

    def epoch_end(self, epoch: int, metrics: dict[str, float], model: FusionModel) -> bool:
        return False

    def finish(self, model: FusionModel, history: list[dict[str, float]]) -> None:
        pass


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@dataclass
class _Run:
    """What every epoch of one :func:`fit` uses, made once before the first."""

    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    train_idx: np.ndarray
    val_idx: np.ndarray
    batch_size: int
    gen: torch.Generator


def fit(
    model: FusionModel,
    data: PreparedData,
    tc: TrialConfig,
    *,
    device: torch.device,
    seed: int = 0,
    on_epoch_end: EpochCallback | None = None,
    hooks: Sequence[TrainingHook] = (),
) -> list[dict[str, float]]:
    """Trains for ``tc.epochs`` epochs (fewer when a hook stops it); returns the per-epoch metrics.

    Raises:
        TrialDiverged: the loss became NaN or infinite.
    """
    run = _set_up(model, data, tc, device, seed, hooks)
    history: list[dict[str, float]] = []
    for epoch in range(1, tc.epochs + 1):
        t0 = time.perf_counter()
        metrics = _train_epoch(model, data, tc, run, device, hooks, epoch)
        metrics.update(evaluate(model, data, run.val_idx, device, prefix="val", loss_fn=run.loss_fn))
        metrics["epoch_seconds"] = time.perf_counter() - t0  # the whole epoch: training and validation
        history.append(metrics)
        if _report(epoch, metrics, model, on_epoch_end, hooks):
            break
    for hook in hooks:
        hook.finish(model, history)
    return history


def _set_up(model: FusionModel, data: PreparedData, tc: TrialConfig, device: torch.device, seed: int,
            hooks: Sequence[TrainingHook]) -> _Run:
    """Moves the model to ``device``; builds the loss, optimizer, schedule, scaler and shuffling generator."""
    meta = data.meta
    model.to(device)
    loss_fn = build_loss(tc.loss.name, tc.loss.params, meta.target, meta.class_counts).to(device)
    opt = build_optimizer(tc.optimizer.name, tc.optimizer.params, [p for p in model.parameters() if p.requires_grad],
                          tc.lr, tc.weight_decay)
    train_idx, val_idx = data.indices(0), data.indices(1)
    batch_size = tc.batch_size or auto_batch_size(len(train_idx))  # 0: train.batch_size auto
    steps = max(1, math.ceil(len(train_idx) / batch_size))
    for hook in hooks:  # before the schedule: a hook may add parameter groups (train/staged.py), scheduled too
        hook.start(model, opt, data, tc)
    sched = build_schedule(tc.lr_schedule.name, tc.lr_schedule.params, opt, steps * tc.epochs, steps * tc.warmup_epochs)
    use_amp = tc.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    return _Run(loss_fn=loss_fn, opt=opt, sched=sched, scaler=scaler, use_amp=use_amp, train_idx=train_idx,
                val_idx=val_idx, batch_size=batch_size, gen=torch.Generator().manual_seed(seed))


def _train_epoch(model: FusionModel, data: PreparedData, tc: TrialConfig, run: _Run, device: torch.device,
                 hooks: Sequence[TrainingHook], epoch: int) -> dict[str, float]:
    """One pass over the training rows: ``train_loss``, ``train_<term>`` per extra loss term, samples per second."""
    model.train()
    t0 = time.perf_counter()
    sums: dict[str, float] = {}
    seen = 0
    for inputs, present, y in iter_batches(data, run.train_idx, run.batch_size, device, keys=model.feature_keys,
                                           shuffle=True, generator=run.gen, drop_singleton=True):
        inputs = augment_batch(model, inputs, tc.augment)
        with _autocast(device, run.use_amp):
            terms = _loss_terms(model, inputs, present, y, tc, run.loss_fn, hooks)
            loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise TrialDiverged(f"loss became {loss.item()} at epoch {epoch}")
        _step(model, loss, tc, run)
        sums["loss"] = sums.get("loss", 0.0) + loss.item() * len(y)
        for name, t in terms.items():
            if name != "main":
                sums[name] = sums.get(name, 0.0) + float(t.detach()) * len(y)
        seen += len(y)
    train_seconds = time.perf_counter() - t0
    metrics = {f"train_{k}": v / max(seen, 1) for k, v in sums.items()}
    metrics["train_samples_per_second"] = seen / max(train_seconds, 1e-9)
    return metrics


def _loss_terms(model: FusionModel, inputs: dict[str, Tensor], present: dict[str, Tensor], y: Tensor,
                tc: TrialConfig, loss_fn: nn.Module, hooks: Sequence[TrainingHook]) -> dict[str, Tensor]:
    """One batch's named loss terms: ``main``, ``aux`` (the fusion's auxiliary heads) and the hooks'."""
    fwd = model.forward_with_aux(inputs, present)
    terms = {"main": loss_fn(fwd.out, y)}
    if fwd.aux:
        terms["aux"] = tc.aux_weight * sum(loss_fn(a, y) for a in fwd.aux.values()) / len(fwd.aux)
    for hook in hooks:
        terms.update(hook.loss_terms(model, fwd, y, present))
    return terms


def _step(model: FusionModel, loss: Tensor, tc: TrialConfig, run: _Run) -> None:
    """Backward pass, gradient clipping (``train.grad_clip``), optimizer and schedule step."""
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if tc.grad_clip > 0:
        run.scaler.unscale_(run.opt)
        nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    run.sched.step()


def _report(epoch: int, metrics: dict[str, float], model: FusionModel, on_epoch_end: EpochCallback | None,
            hooks: Sequence[TrainingHook]) -> bool:
    """Hands an epoch's metrics to the caller, then to every hook; True when a hook stops training."""
    if on_epoch_end is not None:
        on_epoch_end(epoch, metrics, model)
    return any([hook.epoch_end(epoch, metrics, model) for hook in hooks])  # every hook sees every epoch


@torch.no_grad()
def predict(model: FusionModel, data: PreparedData, idx: np.ndarray, device: torch.device,
            batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Raw outputs and targets over ``idx``, on the CPU."""
    model.eval()
    outs, ys = [], []
    for inputs, present, y in iter_batches(data, idx, batch_size, device, keys=model.feature_keys):
        outs.append(model(inputs, present).float().cpu())
        ys.append(y.cpu())
    return torch.cat(outs), torch.cat(ys)


def evaluate(model: FusionModel, data: PreparedData, idx: np.ndarray, device: torch.device, *,
             prefix: str, loss_fn: nn.Module | None = None) -> dict[str, float]:
    """Loss and the target kind's metrics over ``idx``, keys prefixed (``val_accuracy``)."""
    out, y = predict(model, data, idx, device)
    res = output_metrics(out, y, data.meta, prefix=prefix, loss_fn=loss_fn)
    if loss_fn is not None:
        loss_fn.to(device)
    return res


@torch.no_grad()
def measure_latency(model: FusionModel, data: PreparedData, device: torch.device, batch: int = 32,
                    repeats: int = 5) -> float:
    """Median milliseconds of one forward pass on a batch of ``batch`` validation samples."""
    model.eval()
    idx = data.indices(1)[:batch]
    inputs, present, _ = next(iter_batches(data, idx, batch, device, keys=model.feature_keys))
    model(inputs, present)  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(inputs, present)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))

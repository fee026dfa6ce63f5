"""Training and evaluation of one model. Knows nothing of Ray or MLflow: ``fit`` calls
``on_epoch_end(epoch, metrics, model)`` after each epoch, and the caller decides what to
report or keep.

Batches are sliced straight from the prepared arrays (no DataLoader workers, no copies
beyond the batch itself); images stay uint8 until they reach the device.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from autofusion.augment import augment_batch
from autofusion.data.prepare import DataMeta, PreparedData
from autofusion.models.build import FusionModel
from autofusion.models.losses import build_loss
from autofusion.optim import build_optimizer, build_schedule
from autofusion.metrics import DEFAULT_LOSS
from autofusion.spaces.sample import TrialConfig

EpochCallback = Callable[[int, dict[str, float], FusionModel], None]

class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def pick_device(prefer: str | None = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def iter_batches(
    data: PreparedData, idx: np.ndarray, batch_size: int, device: torch.device,
    *, shuffle: bool = False, generator: torch.Generator | None = None, drop_singleton: bool = False,
) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor], Tensor]]:
    """Yields (inputs, present, targets) batches over ``idx``."""
    order = idx[torch.randperm(len(idx), generator=generator).numpy()] if shuffle else idx
    non_blocking = device.type == "cuda"
    for start in range(0, len(order), batch_size):
        sel = np.sort(order[start:start + batch_size])  # sorted reads are kinder to memmaps
        if drop_singleton and len(sel) < 2:
            continue
        inputs = {m: torch.from_numpy(np.ascontiguousarray(a[sel])).to(device, non_blocking=non_blocking)
                  for m, a in data.arrays.items()}
        present = {m: torch.from_numpy(p[sel]).to(device) for m, p in data.present.items()}
        yield inputs, present, torch.from_numpy(data.targets[sel]).to(device)


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def fit(
    model: FusionModel,
    data: PreparedData,
    tc: TrialConfig,
    *,
    device: torch.device,
    seed: int = 0,
    on_epoch_end: EpochCallback | None = None,
) -> list[dict[str, float]]:
    """Trains for ``tc.epochs`` epochs; returns the per-epoch metrics.

    Raises:
        TrialDiverged: the loss became NaN or infinite.
    """
    meta = data.meta
    model.to(device)
    loss_fn = build_loss(tc.loss.name, tc.loss.params, meta.target, meta.class_counts).to(device)
    opt = build_optimizer(tc.optimizer.name, tc.optimizer.params, model.parameters(), tc.lr, tc.weight_decay)
    train_idx, val_idx = data.indices(0), data.indices(1)
    steps = max(1, math.ceil(len(train_idx) / tc.batch_size))
    sched = build_schedule(tc.lr_schedule.name, tc.lr_schedule.params, opt, steps * tc.epochs, steps * tc.warmup_epochs)
    use_amp = tc.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    for epoch in range(1, tc.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        for inputs, present, y in iter_batches(data, train_idx, tc.batch_size, device, shuffle=True,
                                               generator=gen, drop_singleton=True):
            inputs = augment_batch(inputs, tc.augment)
            with _autocast(device, use_amp):
                out, aux = model.forward_with_aux(inputs, present)
                loss = loss_fn(out, y)
                for m, a in aux.items():
                    loss = loss + tc.aux_weight * loss_fn(a, y) / len(aux)
            if not torch.isfinite(loss):
                raise TrialDiverged(f"loss became {loss.item()} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            total += loss.item() * len(y)
            seen += len(y)
        train_seconds = time.perf_counter() - t0
        metrics = {"train_loss": total / max(seen, 1), "train_samples_per_second": seen / max(train_seconds, 1e-9)}
        metrics.update(evaluate(model, data, val_idx, device, prefix="val", loss_fn=loss_fn))
        metrics["epoch_seconds"] = time.perf_counter() - t0  # the whole epoch: training and validation
        history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics, model)
    return history


@torch.no_grad()
def predict(model: FusionModel, data: PreparedData, idx: np.ndarray, device: torch.device,
            batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Raw outputs and targets over ``idx``, on the CPU."""
    model.eval()
    outs, ys = [], []
    for inputs, present, y in iter_batches(data, idx, batch_size, device):
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


def output_metrics(out: Tensor, y: Tensor, meta: DataMeta, *, prefix: str,
                   loss_fn: nn.Module | None = None) -> dict[str, float]:
    """Loss (the target kind's default loss unless given) and scores of outputs already on
    the CPU, keys prefixed."""
    if loss_fn is None:
        loss_fn = build_loss(DEFAULT_LOSS[meta.target], {}, meta.target, meta.class_counts)
    res = {"loss": float(loss_fn.to("cpu")(out, y)), **score(out, y, meta)}
    return {f"{prefix}_{k}": v for k, v in res.items()}


def score(out: Tensor, y: Tensor, meta: DataMeta) -> dict[str, float]:
    """torchmetrics scores of outputs against targets."""
    import torchmetrics.functional as MF

    if meta.target == "classification":
        n = meta.num_outputs
        return {
            "accuracy": float(MF.accuracy(out, y, task="multiclass", num_classes=n, average="micro")),
            "f1_macro": float(MF.f1_score(out, y, task="multiclass", num_classes=n, average="macro")),
        }
    if meta.target == "multilabel":
        n = meta.num_outputs
        yi = y.int()
        return {
            "f1_macro": float(MF.f1_score(out, yi, task="multilabel", num_labels=n, average="macro")),
            "f1_micro": float(MF.f1_score(out, yi, task="multilabel", num_labels=n, average="micro")),
            "exact_match": float(MF.exact_match(out, yi, task="multilabel", num_labels=n)),
        }
    return {
        "rmse": float(MF.mean_squared_error(out, y, squared=False)),
        "mae": float(MF.mean_absolute_error(out, y)),
        "r2": float(MF.r2_score(out.flatten(), y.flatten())) if len(y) > 1 else 0.0,
    }


@torch.no_grad()
def confusion(out: Tensor, y: Tensor, num_classes: int) -> np.ndarray:
    import torchmetrics.functional as MF

    return MF.confusion_matrix(out, y, task="multiclass", num_classes=num_classes).numpy()


@torch.no_grad()
def measure_latency(model: FusionModel, data: PreparedData, device: torch.device, batch: int = 32,
                    repeats: int = 5) -> float:
    """Median milliseconds of one forward pass on a batch of ``batch`` validation samples."""
    model.eval()
    idx = data.indices(1)[:batch]
    inputs, present, _ = next(iter_batches(data, idx, batch, device))
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

"""Batches sliced straight from the prepared arrays (no DataLoader workers, no copies beyond
the batch itself); images stay uint8 until they reach the device. Rows that share a file or
a text gather it from its one entry (``data.arrays.IndexedRows``), memory-mapped or shared
through Ray's object store: a trial holds no copy of the data of its own."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from autofusion.data.prepare import PreparedData
from autofusion.modalities import MODALITIES
from autofusion.models.build import FusionModel
from autofusion.models.extractors import rows


def pick_device(prefer: str | None = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def iter_batches(
    data: PreparedData, idx: np.ndarray, batch_size: int, device: torch.device,
    *, keys: dict[str, str | None] | None = None, shuffle: bool = False,
    generator: torch.Generator | None = None, drop_singleton: bool = False,
) -> Iterator[tuple[dict[str, Any], dict[str, Tensor], Tensor]]:
    """Yields (inputs, present, targets) batches over ``idx``.

    ``keys`` says, per input, which extractor's arrays to read (a model's ``feature_keys``:
    one entry per input the model reads, and only those are batched); None reads the
    modality's own arrays. An extractor's single array ``x`` comes as a tensor, several as a
    dict of tensors. Without ``keys`` every input is batched.
    """
    names = list(keys) if keys else list(data.arrays)
    keys = keys or {}
    order = idx[torch.randperm(len(idx), generator=generator).numpy()] if shuffle else idx
    non_blocking = device.type == "cuda"

    def put(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).to(device, non_blocking=non_blocking)

    for start in range(0, len(order), batch_size):
        sel = np.sort(order[start:start + batch_size])  # sorted reads are kinder to memmaps
        if drop_singleton and len(sel) < 2:
            continue
        inputs: dict[str, Any] = {}
        for name in names:
            key = keys.get(name)
            if key is None:
                inputs[name] = put(np.ascontiguousarray(data.arrays[name][sel]))
                continue
            parts = {k: put(v) for k, v in rows(data.features[f"{name}|{key}"], sel).items()}
            inputs[name] = parts["x"] if list(parts) == ["x"] else parts
        present = {m: torch.from_numpy(data.present[m][sel]).to(device) for m in names}
        yield inputs, present, torch.from_numpy(data.targets[sel]).to(device)


def augment_batch(model: FusionModel, inputs: dict[str, Any], mode: str) -> dict[str, Any]:
    """The batch augmented according to ``mode`` (``none``: unchanged); only inputs that read
    their modality's own arrays are augmented, by that modality's augmentation."""
    if mode == "none":
        return inputs
    return {n: (MODALITIES.get(model.inputs[n]).augment(x) if model.feature_keys.get(n) is None else x)
            for n, x in inputs.items()}

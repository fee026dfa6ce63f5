"""A pretrained encoder run over many rows: the frozen outputs the feature cache stores
(:func:`embed`, a chunk of distinct cells at a time), batched by what the device holds, and
the batches both it and the served model's backbones take (:func:`batches`: texts longest
first, so that short texts are not run padded to long ones)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

EMBED_BATCH = 32  # rows per forward pass when the frozen outputs are computed on a CPU (the least on a GPU)
MAX_EMBED_BATCH = 512  # the most on a GPU, whatever its memory
GPU_MEMORY_SHARE = 0.5  # of the GPU's free memory, what one batch may take


def batches(arrays: Any, n: int, size: int) -> Iterator[tuple[np.ndarray, Any]]:
    """The ``n`` rows of model inputs ``arrays`` (a dict of arrays or tensors, or one) in batches
    of ``size``, as (their row numbers, their inputs): a text model's (token ids and attention
    mask) longest first, so that a batch's texts are of one length and the text encoders' cut
    to the longest (``text.trimmed``) drops the rest of the padding; any other in order."""
    mask = arrays.get("attention_mask") if isinstance(arrays, dict) and "input_ids" in arrays else None
    order = np.arange(n) if mask is None or mask.ndim != 2 else np.argsort(-np.asarray(mask).sum(axis=1),
                                                                          kind="stable")
    for start in range(0, n, size):
        sel = order[start:start + size]
        yield sel, ({k: v[sel] for k, v in arrays.items()} if isinstance(arrays, dict) else arrays[sel])


@torch.no_grad()
def embed(encoder: nn.Module, arrays: dict[str, np.ndarray], *, batch_size: int = EMBED_BATCH,
          progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Frozen outputs of every row, in batches, on the GPU when there is one: float arrays as
    float16, the pad mask as bool, in the rows' order (run in :func:`batches`' order). Callers hand it
    a chunk at a time (``autofusion.search.features``)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder.to(device).eval()
    parts: dict[str, list[np.ndarray]] = {}
    done: list[np.ndarray] = []
    for sel, part in batches(arrays, len(next(iter(arrays.values()))), batch_size):
        x = {k: torch.from_numpy(np.array(v)).to(device) for k, v in part.items()}
        with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
            out = encoder.outputs(x["x"] if list(x) == ["x"] else x)
        for k, v in out.items():
            v = v.cpu()
            parts.setdefault(k, []).append(v.numpy() if v.dtype == torch.bool else v.float().numpy().astype(np.float16))
        done.append(sel)
        if progress is not None:
            progress(len(sel))
    back = np.argsort(np.concatenate(done)) if done else np.arange(0)  # the rows in their own order again
    return {k: np.concatenate(v)[back] for k, v in parts.items()}


def embed_chunk() -> int:
    """Distinct cells per chunk written to the feature cache: what an interrupted run redoes at most."""
    return MAX_EMBED_BATCH if torch.cuda.is_available() else 8 * EMBED_BATCH


def batch_for_memory(free_bytes: float, row_bytes: float) -> int:
    """Rows per batch when a row takes ``row_bytes`` of a GPU with ``free_bytes`` free: a
    multiple of :data:`EMBED_BATCH` filling :data:`GPU_MEMORY_SHARE` of it, at most
    :data:`MAX_EMBED_BATCH`."""
    fit = int(GPU_MEMORY_SHARE * free_bytes / max(row_bytes, 1.0)) // EMBED_BATCH * EMBED_BATCH
    return max(EMBED_BATCH, min(MAX_EMBED_BATCH, fit))


@torch.no_grad()
def embed_batch_size(encoder: nn.Module, arrays: dict[str, np.ndarray]) -> int:
    """:data:`EMBED_BATCH` on a CPU; on a GPU, from its free memory and what a first batch of
    :data:`EMBED_BATCH` rows took there (activations grow with the batch, the weights do not)."""
    if not torch.cuda.is_available():
        return EMBED_BATCH
    device = torch.device("cuda")
    encoder.to(device).eval()
    n = min(EMBED_BATCH, len(next(iter(arrays.values()))))
    if n == 0:
        return EMBED_BATCH
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    embed(encoder, {k: v[:n] for k, v in arrays.items()}, batch_size=n)
    torch.cuda.synchronize(device)
    row = (torch.cuda.max_memory_allocated(device) - before) / n
    free, _ = torch.cuda.mem_get_info(device)
    return batch_for_memory(free, row)

"""Augmentation on cached tensors, per batch, on the device the batch is on.

``light``: images and video frames are flipped left-right and shifted by up to 1/8 of their
side (reflect padding); audio gets a random gain and a circular time shift of up to 10%;
text has 10% of its word ids replaced by <unk>. Nothing is decoded again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from autofusion.data.text import PAD, UNK


def _shift_flip(x: Tensor) -> Tensor:
    """Per-sample flip and shift of ``[B, ..., C, H, W]`` uint8 images (frames share theirs)."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    lead = x.shape[1:-3]
    flat = x.reshape(b, -1, h, w).float()
    pad = max(1, h // 8)
    padded = F.pad(flat, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    flip = (torch.rand(b) < 0.5).tolist()
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    for i in range(b):
        if flip[i]:
            out[i] = out[i].flip(-1)
    return out.round().clamp(0, 255).to(x.dtype).reshape(b, *lead, x.shape[-3], h, w)


def _audio(x: Tensor) -> Tensor:
    b, n = x.shape
    gain = torch.empty(b, 1, device=x.device).uniform_(0.7, 1.3)
    shifts = torch.randint(-n // 10, n // 10 + 1, (b,)).tolist()
    return torch.stack([torch.roll(x[i], shifts[i]) for i in range(b)]) * gain


def _text(x: Tensor) -> Tensor:
    drop = (torch.rand(x.shape, device=x.device) < 0.1) & (x != PAD)
    return torch.where(drop, torch.full_like(x, UNK), x)


AUGMENTERS = {"image": _shift_flip, "video": _shift_flip, "audio": _audio, "text": _text}


def augment_batch(inputs: dict[str, Tensor], mode: str) -> dict[str, Tensor]:
    """The batch, augmented according to ``mode`` (``none`` returns it unchanged)."""
    if mode == "none":
        return inputs
    return {m: AUGMENTERS[m](x) for m, x in inputs.items()}

"""Sensor encoders over ``[B, channels, length]`` float readings."""

from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F
from torch import Tensor, nn

from autofusion.components import Ge, Rate, Size
from autofusion.modalities import ModalityInfo
from autofusion.models.base import Encoder, Tokens, register_encoder


class _TemporalBlock(nn.Module):
    """Two dilated causal convolutions with ReLU and dropout, and a residual connection."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, dilation=dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.drop(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        h = self.drop(F.relu(self.conv2(F.pad(h, (self.pad, 0)))))
        return F.relu(h + self.skip(x))


@register_encoder("tcn", modality="sensor")
class TCN(Encoder):
    """Temporal convolutional network (Bai et al. 2018): residual blocks of dilated causal 1-D
    convolutions (dilations 1, 2, 4, ...) after a batch norm of each channel; tokens are its
    outputs averaged down to at most `max_tokens` time steps.

    Args:
        width: channels of every block (and the output width).
        levels: blocks; the receptive field is about ``2 * (kernel_size - 1) * 2 ** levels`` steps.
        kernel_size: convolution width.
        dropout: dropout after each convolution.
        max_tokens: time steps the token sequence is pooled to (for early and attention fusion).
    """

    def __init__(self, info: ModalityInfo, *, width: Size = 32, levels: Size = 4,
                 kernel_size: Annotated[int, Ge(2)] = 3, dropout: Rate = 0.1, max_tokens: Size = 32) -> None:
        super().__init__()
        channels = int(info.extra.get("channels", 1))
        self.norm = nn.BatchNorm1d(channels)
        blocks, c_in = [], channels
        for level in range(levels):
            blocks.append(_TemporalBlock(c_in, width, kernel_size, 2 ** level, dropout))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.max_tokens = max_tokens
        self.out_dim = width

    def features(self, x: Tensor) -> Tensor:
        """``[B, channels, length]`` -> ``[B, width, length]``."""
        return self.blocks(self.norm(x.float()))

    def tokens(self, x: Tensor) -> Tokens:
        h = self.features(x)
        if h.shape[-1] > self.max_tokens:
            h = F.adaptive_avg_pool1d(h, self.max_tokens)
        return h.transpose(1, 2), None

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x).mean(dim=-1)

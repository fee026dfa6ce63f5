"""Audio encoders over ``[B, S]`` mono waveforms at the dataset's sample rate.

Spectral features are computed inside the model with torchaudio transforms, so the logged
model takes waveforms and carries its own front end.
"""

from __future__ import annotations

import torchaudio
from torch import Tensor, nn

from autofusion.components import Size
from autofusion.modalities import ModalityInfo
from autofusion.models.base import Encoder, Tokens, register_encoder


def _conv_stack(c_in: int, width: int, depth: int, conv: type[nn.Module], pool: type[nn.Module]):
    layers: list[nn.Module] = []
    norm = nn.BatchNorm2d if conv is nn.Conv2d else nn.BatchNorm1d
    for i in range(depth):
        c_out = width * (2 ** min(i, 2))
        layers += [conv(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True), pool(2)]
        c_in = c_out
    return nn.Sequential(*layers), c_in


@register_encoder("mel_cnn", modality="audio")
class MelCNN(Encoder):
    """A 2-D CNN on a log-mel spectrogram."""

    def __init__(self, info: ModalityInfo, *, n_mels: Size = 32, width: Size = 16, depth: Size = 3) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=info.sample_rate, n_fft=512, hop_length=256, n_mels=n_mels
        )
        self.db = torchaudio.transforms.AmplitudeToDB()
        self.cnn, self.out_dim = _conv_stack(1, width, depth, nn.Conv2d, nn.MaxPool2d)

    def tokens(self, x: Tensor) -> Tokens:
        spec = self.db(self.mel(x.float()) + 1e-6).unsqueeze(1)  # [B, 1, mels, T]
        spec = (spec - spec.mean(dim=(2, 3), keepdim=True)) / (spec.std(dim=(2, 3), keepdim=True) + 1e-5)
        fmap = self.cnn(spec).mean(dim=2)  # pool frequency -> [B, C, T']
        return fmap.transpose(1, 2), None


@register_encoder("mfcc_gru", modality="audio")
class MFCCGRU(Encoder):
    """A GRU over MFCC frames."""

    def __init__(self, info: ModalityInfo, *, n_mfcc: Size = 20, hidden: Size = 64) -> None:
        super().__init__()
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=info.sample_rate, n_mfcc=n_mfcc,
            melkwargs={"n_fft": 512, "hop_length": 256, "n_mels": max(n_mfcc, 32)},
        )
        self.norm = nn.LayerNorm(n_mfcc)
        self.gru = nn.GRU(n_mfcc, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def tokens(self, x: Tensor) -> Tokens:
        feats = self.norm(self.mfcc(x.float()).transpose(1, 2))  # [B, T, n_mfcc]
        out, _ = self.gru(feats)
        return out, None


@register_encoder("wave_cnn", modality="audio")
class WaveCNN(Encoder):
    """A 1-D CNN on the raw waveform, with a strided first layer."""

    def __init__(self, info: ModalityInfo, *, width: Size = 16, depth: Size = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(1, width, 64, stride=16, padding=24, bias=False),
            nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.MaxPool1d(4),
        )
        self.body, self.out_dim = _conv_stack(width, width, depth, nn.Conv1d, nn.MaxPool1d)

    def tokens(self, x: Tensor) -> Tokens:
        fmap = self.body(self.stem(x.float().unsqueeze(1)))
        return fmap.transpose(1, 2), None

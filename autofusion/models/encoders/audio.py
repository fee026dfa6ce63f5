"""Every audio encoder, by family:

* from scratch, over ``[B, S]`` mono waveforms at the dataset's sample rate, with spectral
  features computed inside the model by torchaudio transforms (the logged model takes
  waveforms and carries its own front end): ``mel_cnn``, ``mfcc_gru``, ``wave_cnn``;
* classical: ``mfcc_stats``, per-clip MFCC statistics standardised on the training split;
* pretrained (Hugging Face transformers, with the model's own feature extractor and sample
  rate): ``hf_audio`` (wav2vec2, HuBERT, AST, ...).

What the classical and pretrained families share is in ``_classical.py`` and ``_pretrained.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from autofusion.components import Ge, Le, Rate, Size
from autofusion.modalities import ModalityInfo
from autofusion.modalities.audio import decode_audio, num_samples
from autofusion.models import weights
from autofusion.models.base import Encoder, Tokens, register_encoder
from autofusion.models.encoders._classical import (
    FeatureMLP,
    Standardised,
    present_or_none,
)
from autofusion.models.encoders._hf import config_of, load_model
from autofusion.models.encoders._pretrained import (
    ModelInputs,
    PretrainedEncoder,
    decode_cells,
    grid_tokens,
)
from autofusion.models.extractors import FeatureExtractor

# --- from scratch -----------------------------------------------------------------------------


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


# --- classical --------------------------------------------------------------------------------


class MfccStatsExtractor(Standardised):
    """Per clip: mean and standard deviation over time of ``n_mfcc`` MFCCs, their deltas and
    delta-deltas (torchaudio; 25 ms windows, 10 ms hop), over the clip's own frames (not the
    zero padding that brings it to the modality's length)."""

    def features(self, cells: list[Any]) -> np.ndarray:
        rate, length, n_mfcc = int(self.prep["sample_rate"]), num_samples(self.prep), int(self.params["n_mfcc"])
        hop, n_fft = max(1, rate // 100), 1 << max(6, int(np.ceil(np.log2(rate * 0.025))))
        mfcc = torchaudio.transforms.MFCC(sample_rate=rate, n_mfcc=n_mfcc, log_mels=True, melkwargs={
            "n_fft": n_fft, "hop_length": hop, "n_mels": max(n_mfcc, min(40, n_fft // 4))})
        empty = np.zeros(length, dtype=np.float32)
        waves = decode_cells(present_or_none(cells), lambda c: decode_audio(c, rate, length), empty)
        out = []
        with torch.no_grad():
            for start in range(0, len(waves), 256):
                batch = torch.from_numpy(np.ascontiguousarray(waves[start:start + 256]))
                out.append(_clip_stats(mfcc(batch), batch, hop))
        return np.concatenate(out) if out else np.zeros((0, 6 * n_mfcc))


def _clip_stats(m: Any, waves: Any, hop: int) -> np.ndarray:
    """Mean and std over each clip's frames of MFCCs ``m`` ``[B, C, T]``, deltas and delta-deltas."""
    import torchaudio.functional as AF

    d1 = AF.compute_deltas(m)
    d2 = AF.compute_deltas(d1)
    nonzero = waves.abs() > 0
    last = (nonzero.shape[1] - nonzero.flip(1).int().argmax(dim=1)).where(nonzero.any(dim=1), 0)
    frames = (last // hop + 1).clamp(1, m.shape[-1])
    keep = (np.arange(m.shape[-1])[None, :] < frames.numpy()[:, None]).astype(np.float32)[:, None, :]
    count = keep.sum(axis=2)
    stats = []
    for x in (m.numpy(), d1.numpy(), d2.numpy()):
        mean = (x * keep).sum(axis=2) / count
        var = (((x - mean[:, :, None]) ** 2) * keep).sum(axis=2) / count
        stats += [mean, np.sqrt(var)]
    return np.concatenate(stats, axis=1)


@register_encoder("mfcc_stats", modality="audio")
class MfccStats(FeatureMLP):
    """Per-clip means and standard deviations of MFCCs, deltas and delta-deltas (standardised
    on the training split) into a small MLP: the classical audio baseline.

    Args:
        n_mfcc: MFCC coefficients (6 * n_mfcc features).
        dim: width of the hidden layer (the encoder's output).
        dropout: dropout on the features while training.
    """

    extractor: ClassVar[type[FeatureExtractor]] = MfccStatsExtractor
    feature_params: ClassVar[tuple[str, ...]] = ("n_mfcc",)

    def __init__(self, info: ModalityInfo, *, n_mfcc: Annotated[int, Ge(8), Le(64)] = 20, dim: Size = 128,
                 dropout: Rate = 0.2) -> None:
        super().__init__(info, dim, dropout)


# --- pretrained -------------------------------------------------------------------------------


class AudioInputs(ModelInputs):
    """Waveforms decoded at the model's sample rate (the modality's ``seconds``), through the
    model's own feature extractor (normalised waveforms, or AST's filter banks)."""

    state_keys = ("dim", "config", "sample_rate", "num_samples")

    def lookup(self) -> weights.Weights:
        return weights.hf_model(self.params["model"])

    def setup(self) -> None:
        from transformers import AutoFeatureExtractor

        cfg = config_of(self.weights.path)
        self.config = cfg.to_dict()
        self.processor = AutoFeatureExtractor.from_pretrained(self.weights.path)
        self.sample_rate = int(self.processor.sampling_rate)
        self.num_samples = num_samples({"sample_rate": self.sample_rate, "seconds": self.prep["seconds"]})
        self.dim = int(cfg.hidden_size)

    def preprocessing(self) -> dict:
        return {"feature_extractor": type(self.processor).__name__, "sample_rate": self.sample_rate,
                "num_samples": self.num_samples}

    def build_info(self) -> dict:
        return {"config": self.config}

    def save_state(self, folder: Path) -> None:
        super().save_state(folder)
        self.processor.save_pretrained(folder / "processor")

    def load_state(self, folder: Path) -> None:
        from transformers import AutoFeatureExtractor

        super().load_state(folder)
        self.processor = AutoFeatureExtractor.from_pretrained(folder / "processor")

    def transform(self, cells: Any) -> dict[str, Any]:
        waves = decode_cells(list(cells), lambda c: decode_audio(c, self.sample_rate, self.num_samples),
                             np.zeros(self.num_samples, np.float32))
        out = self.processor(list(waves), sampling_rate=self.sample_rate, return_tensors="np")
        arrays = {"input_values": np.asarray(out["input_values"], dtype=np.float32)}
        if "attention_mask" in out:
            arrays["attention_mask"] = np.asarray(out["attention_mask"], dtype=np.int8)
        return arrays


@register_encoder("hf_audio", modality="audio")
class HFAudio(PretrainedEncoder):
    """A pretrained transformers audio encoder (wav2vec2, HuBERT, AST, ...) with its own feature extractor and sample rate; `model` is a hub name or a local folder (required).

    Args:
        model: a hub repository in the Hugging Face cache, or a local folder.
        max_tokens: frames kept for token-level fusion (averaged down to this many).
    """

    extractor = AudioInputs
    feature_params = ("model", "max_tokens")
    token_cap = "pool"

    def __init__(self, info: ModalityInfo, *, model: str, max_tokens: Size = 16) -> None:
        super().__init__(info, max_tokens)

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:
        return load_model(extra, load)

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        kw = {"input_values": x["input_values"].float()}
        if "attention_mask" in x:
            kw["attention_mask"] = x["attention_mask"].long()
        h = self.backbone(**kw).last_hidden_state
        if h.ndim == 4:  # a model whose output is a feature map
            h = grid_tokens(h, self.max_tokens)
        return {"pooled": h.mean(dim=1)}, h, None

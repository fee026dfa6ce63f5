"""Audio: decoded once to float32 mono waveforms ``[sample_rate * seconds]`` (soundfile reads,
torchaudio resamples); spectral features are computed by the encoders."""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from autofusion.modalities.base import (
    DataChoice,
    DecodeError,
    Modality,
    ModalityInfo,
    PrepSettings,
    open_source,
    register_modality,
)

DEMO_RATE = 8000
DEMO_SECONDS = 0.5
RATE_CAP = 16000  # Hz: speech models' rate; higher rates cost memory and add little here
SECONDS_CAP, SECONDS_CAP_GPU = 10.0, 30.0


class AudioPrep(PrepSettings):
    """sample_rate: Hz (None: the clips' most common rate, at most 16 kHz); seconds: kept from
    the start of each clip, shorter ones zero-padded (None: the 95th percentile of the
    training clips' durations, capped)."""

    sample_rate: int | None = Field(None, ge=1000, le=192000)
    seconds: float | None = Field(None, gt=0, le=600)


def num_samples(prep: dict) -> int:
    return int(round(prep["sample_rate"] * prep["seconds"]))


@register_modality
class AudioModality(Modality):
    name = "audio"
    Prep = AudioPrep
    file_based = True
    # soundfile's formats, then what only FFmpeg (PyAV) reads: phone recordings, podcasts
    extensions = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus",
                            ".m4a", ".aac", ".wma", ".amr"})
    dtype = np.float32

    def choose(self, prep: dict, sample: Sequence[Any], *, cuda: bool) -> tuple[dict, list[DataChoice]]:
        if prep.get("sample_rate") is not None and prep.get("seconds") is not None:
            return dict(prep), []
        import soundfile as sf

        rates, durations = [], []
        for src in sample:
            try:
                info = sf.info(open_source(src))
                rate, seconds = int(info.samplerate), info.frames / max(info.samplerate, 1)
            except (DecodeError, RuntimeError, OSError, ValueError, TypeError):
                try:  # a format only FFmpeg reads (m4a, aac, ...): its length from the container
                    rate, seconds = ffmpeg_length(src)
                except DecodeError:
                    continue
            rates.append(rate)
            durations.append(seconds)
        out, chosen = dict(prep), []
        if out.get("sample_rate") is None:
            if rates:
                common = Counter(rates).most_common(1)[0][0]
                rate = min(common, RATE_CAP)
                why = f"most common rate of {len(rates)} training clips: {common} Hz"
                why += f"; capped at {RATE_CAP}" if rate < common else ""
            else:
                rate, why = RATE_CAP, "no readable clip in the sample; the default"
            out["sample_rate"] = rate
            chosen.append(DataChoice("audio.sample_rate", rate, why))
        if out.get("seconds") is None:
            cap = SECONDS_CAP_GPU if cuda else SECONDS_CAP
            if durations:
                p95 = float(np.percentile(durations, 95))
                seconds = min(cap, max(0.25, float(np.ceil(p95 * 4) / 4)))
                why = f"95th percentile of {len(durations)} training clips: {p95:.2f} s"
                why += f"; capped at {cap:g} s" if p95 > cap else ""
            else:
                seconds, why = 2.0, "no readable clip in the sample; the default"
            out["seconds"] = seconds
            chosen.append(DataChoice("audio.seconds", seconds, why))
        return out, chosen

    def defaults(self, prep: dict) -> dict:
        return {**prep, "sample_rate": prep.get("sample_rate") or 16000, "seconds": prep.get("seconds") or 2.0}

    def shape(self, prep: dict) -> tuple[int, ...]:
        return (num_samples(prep),)

    def decode(self, source: str | Path | bytes, prep: dict) -> np.ndarray:
        return decode_audio(source, prep["sample_rate"], num_samples(prep))

    def info(self, prep: dict, state: dict) -> ModalityInfo:
        return ModalityInfo("audio", sample_rate=prep["sample_rate"], num_samples=num_samples(prep))

    def augment(self, x: Tensor) -> Tensor:
        """A random gain and a circular time shift of up to 10%."""
        b, n = x.shape
        gain = torch.empty(b, 1, device=x.device).uniform_(0.7, 1.3)
        shifts = torch.randint(-n // 10, n // 10 + 1, (b,)).tolist()
        return torch.stack([torch.roll(x[i], shifts[i]) for i in range(b)]) * gain

    def render_demo(self, bits: tuple[int, int], rng: np.random.Generator, path: Path) -> str | None:
        render_audio(*bits, rng, path)
        return None


def decode_audio(source: str | Path | bytes, sample_rate: int, num_samples: int) -> np.ndarray:
    """Audio -> float32 mono ``[num_samples]`` at ``sample_rate`` (soundfile, torchaudio resample).

    Longer clips keep their start, shorter ones are zero-padded.
    """
    import soundfile as sf

    try:
        data, sr = sf.read(open_source(source), dtype="float32", always_2d=True)
    except DecodeError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        try:  # m4a, aac, wma, ...: FFmpeg through PyAV (the video modality's decoder), the start kept only
            data, sr = read_ffmpeg(source, seconds=num_samples / sample_rate + 0.05)
        except DecodeError:
            raise DecodeError(f"not a readable audio file ({type(exc).__name__})") from None
    if data.shape[0] == 0:
        raise DecodeError("audio file has no samples")
    wave = data.mean(axis=1)
    if sr != sample_rate:
        import torchaudio.functional as AF

        # Resample only what is kept, plus a little margin for the filter.
        keep = int(np.ceil(num_samples * sr / sample_rate)) + 64
        wave = AF.resample(torch.from_numpy(wave[:keep].copy()), sr, sample_rate).numpy()
    if not np.all(np.isfinite(wave)):
        raise DecodeError("audio holds NaN or infinite samples")
    out = np.zeros(num_samples, dtype=np.float32)
    n = min(num_samples, wave.shape[0])
    out[:n] = wave[:n]
    return out


def read_ffmpeg(source: str | Path | bytes, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """The first audio stream of a file soundfile cannot read, as float32 ``[samples, 1]``
    (channels averaged) and its sample rate, decoded by FFmpeg (PyAV): the whole stream, or
    its first ``seconds`` and at most one frame more (a podcast's hour is not decoded for the
    2 s a model keeps)."""
    import av

    with _ffmpeg_errors(), av.open(open_source(source)) as container:
        stream, rate = _audio_stream(container)
        limit = None if seconds is None else int(np.ceil(seconds * rate))
        mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts, have = [], 0
        for frame in container.decode(stream):
            for f in mono.resample(frame):
                parts.append(f.to_ndarray().reshape(-1))
                have += len(parts[-1])
            if limit is not None and have >= limit:
                break
        else:
            parts += [f.to_ndarray().reshape(-1) for f in mono.resample(None)]
    if not parts:
        raise DecodeError("audio file has no samples")
    return np.concatenate(parts).astype(np.float32).reshape(-1, 1), rate


def ffmpeg_length(source: str | Path | bytes) -> tuple[int, float]:
    """A clip's sample rate and seconds from its container's header (FFmpeg through PyAV), or
    from decoding it where the header does not say."""
    import av

    with _ffmpeg_errors(), av.open(open_source(source)) as container:
        stream, rate = _audio_stream(container)
        if stream.duration and stream.time_base:
            return rate, float(stream.duration * stream.time_base)
        if container.duration:
            return rate, container.duration / av.time_base
    data, rate = read_ffmpeg(source)
    return rate, data.shape[0] / max(rate, 1)


def _audio_stream(container: Any) -> tuple[Any, int]:
    """A container's first audio stream and its sample rate."""
    stream = next((s for s in container.streams if s.type == "audio"), None)
    if stream is None:
        raise DecodeError("no audio stream")
    return stream, int(stream.rate or stream.codec_context.sample_rate)


@contextlib.contextmanager
def _ffmpeg_errors() -> Iterator[None]:
    """FFmpeg's errors (many kinds) as one :class:`DecodeError`."""
    try:
        yield
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg's errors are many kinds
        raise DecodeError(f"not a readable audio file ({type(exc).__name__})") from None


def render_audio(high: int, pulsed: int, rng: np.random.Generator, path: Path) -> None:
    """A low (0) or high (1) tone, steady (0) or amplitude-pulsed (1), with noise."""
    import soundfile as sf

    t = np.arange(int(DEMO_RATE * DEMO_SECONDS)) / DEMO_RATE
    freq = rng.uniform(700, 1400) if high else rng.uniform(150, 350)
    tone = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    tone += 0.3 * np.sin(4 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))  # a 2nd harmonic
    if pulsed:
        rate, depth = rng.uniform(4, 8), rng.uniform(0.8, 1)
        envelope = 1 - depth * 0.5 * (1 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    else:
        envelope = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 2 * np.pi))
    wave = rng.uniform(0.25, 0.5) * envelope * tone + rng.normal(0, rng.uniform(0.02, 0.08), t.size)
    buffer = io.BytesIO()  # soundfile syncs a real file to disk on close: slow
    sf.write(buffer, np.clip(wave, -1, 1), DEMO_RATE, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())

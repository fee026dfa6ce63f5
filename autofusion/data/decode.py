"""Decoding one sample of each modality into a fixed-shape array.

Used twice: once per dataset when the decode cache is built, and by the logged MLflow
model on raw inputs, so training and serving preprocess identically. Sources are file
paths or raw bytes. Failures raise :class:`DecodeError` with a short reason.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import numpy as np

Source = Union[str, Path, bytes]


class DecodeError(Exception):
    """A file is missing, unreadable or not of the expected kind."""


def _open(source: Source) -> io.BytesIO | str:
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(bytes(source))
    path = Path(source)
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError:  # e.g. a name longer than the file system allows
        raise DecodeError("not a usable file name") from None
    if not exists:
        raise DecodeError("file not found")
    if not is_file:
        raise DecodeError("not a file")
    return str(path)


def decode_image(source: Source, size: int) -> np.ndarray:
    """Image -> uint8 ``[3, size, size]`` RGB (Pillow; resized with bilinear filtering)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(_open(source)) as im:
            im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a readable image ({type(exc).__name__})") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def decode_audio(source: Source, sample_rate: int, num_samples: int) -> np.ndarray:
    """Audio -> float32 mono ``[num_samples]`` at ``sample_rate`` (soundfile, torchaudio resample).

    Longer clips keep their start, shorter ones are zero-padded.
    """
    import soundfile as sf

    try:
        data, sr = sf.read(_open(source), dtype="float32", always_2d=True)
    except DecodeError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise DecodeError(f"not a readable audio file ({type(exc).__name__})") from None
    if data.shape[0] == 0:
        raise DecodeError("audio file has no samples")
    wave = data.mean(axis=1)
    if sr != sample_rate:
        import torch
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


def decode_video(source: Source, frames: int, size: int) -> np.ndarray:
    """Video -> uint8 ``[frames, 3, size, size]``: ``frames`` frames sampled evenly (PyAV)."""
    import av
    from PIL import Image

    try:
        with av.open(_open(source)) as container:
            if not container.streams.video:
                raise DecodeError("file has no video stream")
            decoded = [f.to_image() for f in container.decode(video=0)]
    except DecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(f"not a readable video ({type(exc).__name__})") from None
    if not decoded:
        raise DecodeError("video has no frames")
    idx = np.linspace(0, len(decoded) - 1, frames).round().astype(int)
    out = np.empty((frames, 3, size, size), dtype=np.uint8)
    for i, j in enumerate(idx):
        im = decoded[j].convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    return out

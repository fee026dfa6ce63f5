"""What autofusion knows about one kind of input, in one place, used by training and by the
served model alike: its preprocessing settings (and how to choose the ones a space leaves
unset from the data), how one cell becomes an array (decoder, shape, dtype), what is fitted
on the training rows (a text vocabulary, column statistics), the adapter that turns the
cached array into the encoder's input inside the model, its augmentation, how its columns
are recognised in a manifest, and how the demo renders it.

A new modality is one module with one ``@register_modality`` class.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from autofusion.components import Registry


class DecodeError(Exception):
    """A file is missing, unreadable or not of the expected kind."""


class PrepSettings(BaseModel):
    """Base of every modality's preprocessing settings: strict, frozen; a field left None is
    chosen from the training split when a search starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ModalityInfo:
    """Shape facts about one input's arrays that an encoder needs to build itself.

    Attributes:
        name: the modality (image, text, audio, video, tabular, ...).
        image_size: side of square images/frames (image, video).
        vocab_size: text vocabulary size including pad (0) and unknown (1).
        max_length: text tokens per sample.
        sample_rate: audio sample rate in Hz.
        num_samples: audio samples per clip.
        frames: frames per video clip.
        extra: anything else a modality or a feature extractor reports (e.g. tabular column
            counts, a TF-IDF vocabulary size).
    """

    name: str
    image_size: int = 0
    vocab_size: int = 0
    max_length: int = 0
    sample_rate: int = 0
    num_samples: int = 0
    frames: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataChoice:
    """A setting chosen from the data, with the reason printed before the search starts."""

    key: str
    value: Any
    why: str

    def __str__(self) -> str:
        return f"{self.key}={self.value} ({self.why})"


class Modality:
    """Base class; subclasses are registered with :func:`register_modality`.

    Class attributes:
        name: the modality's name in space files, manifests and MLflow parameters.
        Prep: its preprocessing settings (a :class:`PrepSettings`).
        file_based: cells are file paths (or base64 bytes when served), decoded to arrays.
        extensions: file suffixes that identify a column of this modality.
        dtype: the array dtype the decoder or encoder produces.
    """

    name: ClassVar[str] = ""
    Prep: ClassVar[type[PrepSettings]] = PrepSettings
    file_based: ClassVar[bool] = False
    extensions: ClassVar[frozenset[str]] = frozenset()
    dtype: ClassVar[Any] = np.float32
    one_input_per_column: ClassVar[bool] = True  # False: all its columns form one input (tabular)
    claims_rest: ClassVar[bool] = False  # inferred last, from every column no other role took
    joinable: ClassVar[bool] = False  # its columns may also be read as one joined input (text)

    # --- preprocessing settings ---------------------------------------------------------
    def choose(self, prep: dict, sample: Any, *, cuda: bool) -> tuple[dict, list[DataChoice]]:
        """Fills the settings left None from a sample of training cells (a list of cells, paths
        resolved; a frame of the training rows for a multi-column modality); returns the
        completed settings and what was chosen, with why."""
        return dict(prep), []

    def defaults(self, prep: dict) -> dict:
        """Completes settings without looking at data (tests, fake data)."""
        return dict(prep)

    # --- one cell -> array ---------------------------------------------------------------
    def shape(self, prep: dict) -> tuple[int, ...]:
        """Shape of one sample's array."""
        raise NotImplementedError  # pragma: no cover

    def decode(self, source: str | Path | bytes, prep: dict) -> np.ndarray:
        """One file (a path or its bytes) -> one sample's array (file modalities)."""
        raise NotImplementedError  # pragma: no cover

    def fit(self, cells: Sequence[Any], prep: dict) -> dict:
        """What is learned from the training rows' cells (JSON-serialisable); nothing by default."""
        return {}

    def encode(self, cells: Sequence[Any], prep: dict, state: dict) -> np.ndarray:
        """Cells -> ``[N, *shape]`` array for modalities held in the manifest itself (text,
        tabular). File modalities decode instead."""
        raise NotImplementedError  # pragma: no cover

    def present(self, frame: Any) -> np.ndarray:
        """Rows of a multi-column input that hold anything (bool ``[N]``)."""
        s = frame.astype("string")
        return (s.notna() & (s.apply(lambda c: c.str.strip()) != "")).any(axis=1).fillna(False).to_numpy(dtype=bool)

    def empty_is_value(self, prep: dict) -> bool:
        """Whether an empty cell is a value of its own (an empty text), present rather than
        missing; False by default."""
        return False

    def empty(self, prep: dict) -> np.ndarray:
        """The array of a missing cell."""
        return np.zeros(self.shape(prep), dtype=self.dtype)

    def info(self, prep: dict, state: dict) -> ModalityInfo:
        """Shape facts for the encoders."""
        return ModalityInfo(self.name)

    # --- inside the model ------------------------------------------------------------------
    def adapter(self, prep: dict) -> nn.Module:
        """A module turning a batch of arrays into encoder input (normalisation, dtype)."""
        return ToFloat() if self.dtype == np.float32 else nn.Identity()

    def augment(self, x: Tensor) -> Tensor:
        """A batch (a tensor on its device) augmented lightly; unchanged by default."""
        return x

    # --- manifests and the demo -----------------------------------------------------------
    def recognises(self, values: Sequence[Any]) -> bool:
        """Whether a column's non-empty values look like this modality's cells."""
        return bool(self.extensions) and _share_with_suffix(values, self.extensions) >= 0.9

    def render_demo(self, bits: tuple[int, int], rng: np.random.Generator, path: Path) -> str | None:
        """Renders one demo cell showing two hidden binary attributes; returns the cell (text,
        or writes ``path`` and returns nothing for file modalities)."""
        raise NotImplementedError  # pragma: no cover


def _share_with_suffix(values: Sequence[Any], extensions: frozenset[str]) -> float:
    vals = [str(v).strip().lower() for v in values if isinstance(v, str) and v.strip()]
    if not vals:
        return 0.0
    return sum(os.path.splitext(v)[1] in extensions for v in vals) / len(vals)


class ToFloat(nn.Module):
    """float32 input."""

    def forward(self, x: Tensor) -> Tensor:
        return x.float()


class Normalize(nn.Module):
    """uint8 RGB images or frames ``[..., 3, H, W]`` -> float, normalised per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255.0)

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std


WINDOWS = re.compile(r"^(.*/)?([A-Za-z]:[\\/]|\\\\)")  # C:\data\..., \\server\share (also after a path join)
URL = re.compile(r"(^|/)(https?|s3|gs|ftp|az|abfss?|hdfs):/", re.I)  # also after a path join: https:/host/...


def open_source(source: str | Path | bytes) -> Any:
    """A path as a string, or bytes wrapped in a file object; missing files raise DecodeError."""
    import io

    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(bytes(source))
    path = Path(source)
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError:  # e.g. a name longer than the file system allows
        raise DecodeError("not a usable file name") from None
    if not exists and URL.search(str(source)):
        raise DecodeError("a URL: autofusion reads local files only; download the files and give their paths")
    if not exists and WINDOWS.match(str(source)):
        raise DecodeError("file not found: a Windows path; give paths relative to the manifest's folder, or this "
                          "machine's own")
    if not exists:
        raise DecodeError("file not found")
    if not is_file:
        raise DecodeError("not a file")
    return str(path)


@functools.cache
def heif() -> None:
    """Lets Pillow open HEIC/HEIF photos (an iPhone's own format) through pillow-heif, once per
    process; first called by an image reader, so a search without images never imports it."""
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - a dependency; without it HEIC files are unreadable images
        return
    pillow_heif.register_heif_opener()


def eight_bit(im: Any) -> Any:
    """An image of more than 8 bits a channel (16-bit greyscale PNG or TIFF, as scans and depth
    maps are saved; 32-bit integer or float) as 8-bit greyscale: a float image within [0, 1]
    scaled by 255, any other stretched from its own minimum to its maximum (Pillow's own
    conversion clips such values at 255: a 16-bit scan turns white, a [0, 1] float one black).
    An 8-bit image unchanged."""
    from PIL import Image as PILImage

    if im.mode not in ("I", "F") and not im.mode.startswith("I;16"):
        return im
    x = np.asarray(im, dtype=np.float64)
    finite = x[np.isfinite(x)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if im.mode == "F" and low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif high <= 255.0 and low >= 0.0:
        low, high = 0.0, 255.0
    scaled = (np.nan_to_num(x, nan=low) - low) / (high - low) * 255.0 if high > low else np.zeros_like(x)
    return PILImage.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), "L")


def upright(im: Any) -> Any:
    """The image as it is meant to be seen: a phone's photo turned by its EXIF orientation tag
    (stored sideways, shown upright), as every viewer shows it; other images unchanged."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(im) if im.getexif().get(0x0112, 1) != 1 else im


def round_up(value: float, step: int) -> int:
    """``value`` rounded up to a multiple of ``step``."""
    return int(-(-int(np.ceil(value)) // step) * step)


MODALITIES: Registry[Modality] = Registry("modality")


def register_modality(cls: type[Modality]) -> type[Modality]:
    """Class decorator: registers one instance of ``cls`` under ``cls.name``."""
    MODALITIES.register(cls.name)(cls())
    return cls

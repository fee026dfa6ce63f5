"""Sensor time series (machine readings, wearables, ECG): one input per column, each cell a
JSON list of readings written in the manifest (``[0.1, 0.3, ...]``; a list of rows for
several channels), or a ``.npy`` / ``.csv`` file of them (rows are time steps, columns
channels). Decoded once to float32 ``[channels, length]``: longer series keep their start,
shorter ones and missing channels are zero-padded, missing readings are 0.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
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
    round_up,
)

LENGTH_CAP, LENGTH_CAP_GPU = 1024, 4096  # time steps
DEMO_LENGTH = 64
SAMPLE = 50  # inline cells a column is recognised on


class SensorPrep(PrepSettings):
    """length: time steps kept per series (None: the 95th percentile of the training series'
    lengths, capped); channels: readings per time step (None: the most a training series has)."""

    length: int | None = Field(None, ge=1, le=100_000)
    channels: int | None = Field(None, ge=1, le=4096)


def inline(cell: Any) -> bool:
    """Whether a cell holds the readings themselves (a list, or JSON text of one) rather than a file."""
    if isinstance(cell, (list, tuple, np.ndarray)):
        return True
    return isinstance(cell, str) and cell.lstrip().startswith("[")


def _numbers(cell: Any) -> bool:
    """Whether an inline cell reads as numbers (at least one)."""
    try:
        return read_series(cell).size > 0
    except DecodeError:
        return False


def read_series(source: Any) -> np.ndarray:
    """A cell (readings, a path, or a file's bytes) -> float64 ``[time, channels]``."""
    if inline(source):
        try:
            values = json.loads(source) if isinstance(source, str) else source
            arr = np.asarray(values, dtype=np.float64)
        except (ValueError, TypeError):
            raise DecodeError("not a list of numbers (write [0.1, 0.2, ...] or a list of such rows)") from None
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        arr = _npy(io.BytesIO(data)) if data[:6] == b"\x93NUMPY" else _csv(io.BytesIO(data))
    else:
        path = open_source(source)
        arr = _npy(path) if Path(path).suffix.lower() == ".npy" else _csv(path)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise DecodeError(f"expected readings of shape [time] or [time, channels], but got shape {list(arr.shape)}")
    return arr


def _npy(source: Any) -> np.ndarray:
    try:
        arr = np.load(source, allow_pickle=False)
        return np.asarray(arr, dtype=np.float64)
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise DecodeError(f"not a readable .npy array of numbers ({type(exc).__name__})") from None


def _csv(source: Any) -> np.ndarray:
    """A CSV of readings, with or without a header; non-numeric columns (timestamps) are left out."""
    try:
        frame = pd.read_csv(source, header=None)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not a readable CSV of readings ({type(exc).__name__})") from None
    nums = frame.apply(pd.to_numeric, errors="coerce")
    if len(nums) and nums.iloc[0].isna().all():  # a header row
        nums = nums.iloc[1:]
    nums = nums.loc[:, nums.notna().any(axis=0)]
    if nums.empty:
        raise DecodeError("the CSV holds no numeric column")
    return nums.to_numpy(dtype=np.float64)


def fit_series(arr: np.ndarray, length: int, channels: int) -> np.ndarray:
    """``[time, channels]`` -> float32 ``[channels, length]``: cut or zero-padded, NaN -> 0."""
    if arr.shape[1] > channels:
        raise DecodeError(f"has {arr.shape[1]} channels, more than modalities.sensor.channels={channels}")
    out = np.zeros((channels, length), dtype=np.float32)
    n = min(length, arr.shape[0])
    out[: arr.shape[1], :n] = np.nan_to_num(arr[:n].T, nan=0.0, posinf=0.0, neginf=0.0)
    return out


@register_modality
class SensorModality(Modality):
    name = "sensor"
    Prep = SensorPrep
    file_based = True
    extensions = frozenset({".npy", ".csv"})
    dtype = np.float32

    def inline(self, cell: Any) -> bool:
        """Cells that are readings, not file paths (kept as written, never resolved)."""
        return inline(cell)

    def choose(self, prep: dict, sample: Sequence[Any], *, cuda: bool) -> tuple[dict, list[DataChoice]]:
        if prep.get("length") is not None and prep.get("channels") is not None:
            return dict(prep), []
        shapes = []
        for cell in sample:
            try:
                shapes.append(read_series(cell).shape)
            except DecodeError:
                continue
        out, chosen = dict(prep), []
        if out.get("length") is None:
            cap = LENGTH_CAP_GPU if cuda else LENGTH_CAP
            if shapes:
                p95 = float(np.percentile([s[0] for s in shapes], 95))
                length = max(8, min(cap, round_up(p95, 8)))
                why = f"95th percentile of {len(shapes)} training series: {p95:.0f} steps"
                why += f", capped at {cap}" if p95 > cap else ""
            else:
                length, why = 128, "no readable series in the sample; the default"
            out["length"] = length
            chosen.append(DataChoice("sensor.length", length, why))
        if out.get("channels") is None:
            if shapes:
                channels = max(s[1] for s in shapes)
                common = Counter(s[1] for s in shapes).most_common(1)[0][0]
                why = f"the most of {len(shapes)} training series" + (f" (most have {common})" if common != channels
                                                                       else "")
            else:
                channels, why = 1, "no readable series in the sample; the default"
            out["channels"] = channels
            chosen.append(DataChoice("sensor.channels", channels, why))
        return out, chosen

    def defaults(self, prep: dict) -> dict:
        return {**prep, "length": prep.get("length") or 128, "channels": prep.get("channels") or 1}

    def shape(self, prep: dict) -> tuple[int, ...]:
        return (prep["channels"], prep["length"])

    def decode(self, source: Any, prep: dict) -> np.ndarray:
        return fit_series(read_series(source), prep["length"], prep["channels"])

    def info(self, prep: dict, state: dict) -> ModalityInfo:
        return ModalityInfo("sensor", extra={"channels": prep["channels"], "length": prep["length"]})

    def augment(self, x: Tensor) -> Tensor:
        """A random gain per series (0.9 to 1.1) and a little noise."""
        gain = torch.empty(x.shape[0], 1, 1, device=x.device).uniform_(0.9, 1.1)
        return x * gain + 0.01 * x.std() * torch.randn_like(x)

    def recognises(self, values: Sequence[Any]) -> bool:
        """Lists of readings (or JSON text of them), or .npy/.csv file paths."""
        vals = [v for v in values if isinstance(v, (list, tuple, np.ndarray)) or (isinstance(v, str) and v.strip())]
        if not vals:
            return False
        lists = [v for v in vals if inline(v)]
        if len(lists) >= 0.9 * len(vals):  # lists of numbers; lists of words (tags) are not readings
            return sum(map(_numbers, lists[:SAMPLE])) >= 0.9 * min(len(lists), SAMPLE)
        return super().recognises(values)

    def render_demo(self, bits: tuple[int, int], rng: np.random.Generator, path: Path) -> str | None:
        """A slow (0) or fast (1) oscillation, steady (0) or decaying (1), with noise; as JSON."""
        fast, decaying = bits
        t = np.arange(DEMO_LENGTH)
        freq = rng.uniform(0.15, 0.25) if fast else rng.uniform(0.03, 0.06)
        envelope = np.exp(-t / rng.uniform(12, 20)) if decaying else np.ones(DEMO_LENGTH)
        x = envelope * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.1, DEMO_LENGTH)
        return json.dumps([round(float(v), 3) for v in x])

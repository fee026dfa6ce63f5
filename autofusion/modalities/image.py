"""Images: decoded once to uint8 ``[3, size, size]`` RGB, normalised inside the model."""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from autofusion.modalities.base import (
    DataChoice,
    DecodeError,
    Modality,
    ModalityInfo,
    Normalize,
    PrepSettings,
    eight_bit,
    heif,
    open_source,
    register_modality,
    round_up,
    upright,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEMO_SIZE = 32


class ImagePrep(PrepSettings):
    """size: side in pixels after resizing (None: from the images' sizes and the device);
    mean/std: per-channel normalisation (ImageNet's by default)."""

    size: int | None = Field(None, ge=8, le=1024)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def image_side(sample: Sequence[Any], *, cuda: bool, cpu_cap: int, gpu_cap: int, what: str) -> DataChoice:
    """The side to resize to: the median shorter side of the sampled images, rounded up to a
    multiple of 16 (or 8 below 32 px), at most ``cpu_cap`` on a CPU and ``gpu_cap`` on a GPU."""
    from PIL import Image

    sides = []
    for src in sample:
        try:
            with Image.open(open_source(src)) as im:  # reads the header only
                sides.append(min(im.size))
        except (DecodeError, OSError, ValueError, SyntaxError):
            continue
    cap = gpu_cap if cuda else cpu_cap
    if not sides:
        return DataChoice(what, min(64, cap), "no readable image in the sample; the default")
    median = float(np.median(sides))
    size = max(16, min(cap, round_up(median, 16 if median >= 32 else 8)))
    capped = f"; capped at {cap} on {'a GPU' if cuda else 'the CPU'}" if size == cap and median > cap else ""
    return DataChoice(what, size, f"median shorter side {median:.0f} px of {len(sides)} training images{capped}")


@register_modality
class ImageModality(Modality):
    name = "image"
    Prep = ImagePrep
    file_based = True
    extensions = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif"})
    dtype = np.uint8

    def choose(self, prep: dict, sample: Sequence[Any], *, cuda: bool) -> tuple[dict, list[DataChoice]]:
        if prep.get("size") is not None:
            return dict(prep), []
        c = image_side(sample, cuda=cuda, cpu_cap=96, gpu_cap=224, what="image.size")
        return {**prep, "size": c.value}, [c]

    def defaults(self, prep: dict) -> dict:
        return {**prep, "size": prep.get("size") or 64}

    def shape(self, prep: dict) -> tuple[int, ...]:
        return (3, prep["size"], prep["size"])

    def decode(self, source: str | Path | bytes, prep: dict) -> np.ndarray:
        """Image -> uint8 ``[3, size, size]`` RGB (Pillow; resized with bilinear filtering)."""
        return decode_image(source, prep["size"])

    def info(self, prep: dict, state: dict) -> ModalityInfo:
        return ModalityInfo("image", image_size=prep["size"])

    def adapter(self, prep: dict) -> nn.Module:
        return Normalize(prep["mean"], prep["std"])

    def augment(self, x: Tensor) -> Tensor:
        return shift_flip(x)

    def render_demo(self, bits: tuple[int, int], rng: np.random.Generator, path: Path) -> str | None:
        render_image(*bits, rng, path)
        return None


def decode_image(source: str | Path | bytes, size: int) -> np.ndarray:
    """Image -> uint8 ``[3, size, size]`` RGB (Pillow; turned upright, resized with bilinear
    filtering)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    heif()
    try:
        with PILImage.open(open_source(source)) as im:
            im = eight_bit(upright(im)).convert("RGB").resize((size, size), PILImage.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a readable image ({type(exc).__name__})") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def shift_flip(x: Tensor) -> Tensor:
    """Per-sample flip and shift (up to 1/8 of the side, reflect padding) of ``[B, ..., C, H, W]``
    uint8 images; the frames of one video share theirs."""
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


# --- the demo ------------------------------------------------------------------------------


def noise_background(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A mid-grey background with per-pixel colour noise, as float in 0..255."""
    base = rng.uniform(70, 150)
    return base + rng.normal(0, 14, size=shape)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def hue_colour(hue_degrees: float, rng: np.random.Generator) -> tuple[int, int, int]:
    """An RGB colour of the given hue with random, fairly high saturation and brightness."""
    r, g, b = colorsys.hsv_to_rgb((hue_degrees % 360) / 360, rng.uniform(0.65, 1), rng.uniform(0.75, 1))
    return int(r * 255), int(g * 255), int(b * 255)


def render_image(large: int, cool: int, rng: np.random.Generator, path: Path) -> None:
    """A small (0) or large (1) shape in a warm (0) or cool (1) colour on a noisy background.

    The shape (circle or square), its position, exact size, hue and brightness are random
    nuisances. Size rather than shape is the attribute: small CNNs that average-pool their
    feature map learn circle-vs-square too slowly when it only matters through an XOR.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    hue = rng.uniform(170, 250) if cool else rng.uniform(-25, 50)  # cyan-blue vs red-yellow
    size = int(rng.integers(16, 23) if large else rng.integers(6, 11))
    x0, y0 = (int(v) for v in rng.integers(1, DEMO_SIZE - size, size=2))
    image = PILImage.fromarray(to_uint8(noise_background(rng, (DEMO_SIZE, DEMO_SIZE, 3))))
    box = (x0, y0, x0 + size - 1, y0 + size - 1)
    draw = ImageDraw.Draw(image)
    (draw.rectangle if rng.integers(2) else draw.ellipse)(box, fill=hue_colour(hue, rng))
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 8, size=(DEMO_SIZE, DEMO_SIZE, 3))
    PILImage.fromarray(to_uint8(pixels), mode="RGB").save(path, format="PNG")

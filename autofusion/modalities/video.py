"""Video: decoded once to uint8 clips ``[frames, 3, size, size]`` (PyAV; frames sampled evenly),
normalised inside the model."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import Field
from torch import Tensor, nn

from autofusion.modalities.base import (
    DataChoice,
    DecodeError,
    Modality,
    ModalityInfo,
    Normalize,
    PrepSettings,
    open_source,
    register_modality,
)
from autofusion.modalities.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    hue_colour,
    image_side,
    noise_background,
    shift_flip,
    to_uint8,
)

DEMO_SIZE = 32
DEMO_FRAMES = 8
DEMO_FPS = 8


class VideoPrep(PrepSettings):
    """frames: sampled evenly per clip (None: the clips' median frame count, at most 8 on a CPU
    and 16 on a GPU); size: side of the frames (None: from the frames' sizes and the device)."""

    frames: int | None = Field(None, ge=1, le=256)
    size: int | None = Field(None, ge=8, le=512)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@register_modality
class VideoModality(Modality):
    name = "video"
    Prep = VideoPrep
    file_based = True
    extensions = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
    dtype = np.uint8

    def choose(self, prep: dict, sample: Sequence[Any], *, cuda: bool) -> tuple[dict, list[DataChoice]]:
        out, chosen = dict(prep), []
        if out.get("frames") is not None and out.get("size") is not None:
            return out, chosen
        counts, firsts = _probe(sample[:64])
        if out.get("frames") is None:
            cap = 16 if cuda else 8
            if counts:
                median = float(np.median(counts))
                frames = int(max(1, min(cap, median)))
                why = f"median of {len(counts)} training clips: {median:.0f} frames" + (
                    f"; capped at {cap}" if median > cap else "")
            else:
                frames, why = cap, "no readable clip in the sample; the default"
            out["frames"] = frames
            chosen.append(DataChoice("video.frames", frames, why))
        if out.get("size") is None:
            c = image_side(firsts, cuda=cuda, cpu_cap=64, gpu_cap=112, what="video.size")
            c = DataChoice(c.key, c.value, c.why.replace("training images", "training clips' first frames"))
            out["size"] = c.value
            chosen.append(c)
        return out, chosen

    def defaults(self, prep: dict) -> dict:
        return {**prep, "frames": prep.get("frames") or 8, "size": prep.get("size") or 64}

    def shape(self, prep: dict) -> tuple[int, ...]:
        return (prep["frames"], 3, prep["size"], prep["size"])

    def decode(self, source: str | Path | bytes, prep: dict) -> np.ndarray:
        return decode_video(source, prep["frames"], prep["size"])

    def info(self, prep: dict, state: dict) -> ModalityInfo:
        return ModalityInfo("video", image_size=prep["size"], frames=prep["frames"])

    def adapter(self, prep: dict) -> nn.Module:
        return Normalize(prep["mean"], prep["std"])

    def augment(self, x: Tensor) -> Tensor:
        return shift_flip(x)

    def render_demo(self, bits: tuple[int, int], rng: np.random.Generator, path: Path) -> str | None:
        render_video(*bits, rng, path)
        return None


def _probe(sample: Sequence[Any]) -> tuple[list[int], list[bytes]]:
    """Frame counts of the sampled clips and their first frames as PNG bytes."""
    import av

    counts, firsts = [], []
    for src in sample:
        try:
            with av.open(open_source(src)) as container:
                if not container.streams.video:
                    continue
                frames = list(container.decode(video=0))
        except (DecodeError, av.error.FFmpegError, OSError, ValueError):
            continue
        if frames:
            counts.append(len(frames))
            buf = io.BytesIO()
            frames[0].to_image().save(buf, format="PNG")
            firsts.append(buf.getvalue())
    return counts, firsts


def decode_video(source: str | Path | bytes, frames: int, size: int) -> np.ndarray:
    """Video -> uint8 ``[frames, 3, size, size]``: ``frames`` frames sampled evenly (PyAV)."""
    import av
    from PIL import Image

    try:
        with av.open(open_source(source)) as container:
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


# --- the demo ------------------------------------------------------------------------------


def video_frames(growing: int, blinking: int, rng: np.random.Generator) -> np.ndarray:
    """``[frames, H, W, 3]`` uint8: a ball that shrinks (0) or grows (1), steady (0) or blinking (1).

    The ball drifts between two random points with a random colour. Growth is an attribute
    that only the frame order reveals (a temporal encoder sees it, frame averaging does
    not); left-vs-right motion is not used, as per-frame CNNs that average-pool space
    cannot see where the ball is.
    """
    from PIL import Image, ImageDraw

    small, large = rng.uniform(4, 7), rng.uniform(14, 19)
    sizes = np.linspace(small, large, DEMO_FRAMES)[:: 1 if growing else -1]
    centres = np.linspace(*rng.uniform(9.5, DEMO_SIZE - 9.5, size=(2, 2)), DEMO_FRAMES)
    visible = np.ones(DEMO_FRAMES, bool)
    if blinking:  # every other frame, starting on or off
        visible = (np.arange(DEMO_FRAMES) + rng.integers(2)) % 2 == 0
    colour = hue_colour(rng.uniform(0, 360), rng)
    background = noise_background(rng, (DEMO_SIZE, DEMO_SIZE, 3))
    noise = rng.normal(0, 6, size=(DEMO_FRAMES, *background.shape))
    strip = Image.fromarray(to_uint8(background + noise).reshape(-1, DEMO_SIZE, 3))  # frames stacked
    draw = ImageDraw.Draw(strip)
    for t in np.flatnonzero(visible):
        (cx, cy), r = centres[t], sizes[t] / 2
        cy += t * DEMO_SIZE
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    return np.asarray(strip).reshape(DEMO_FRAMES, DEMO_SIZE, DEMO_SIZE, 3)


def video_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def render_video(growing: int, blinking: int, rng: np.random.Generator, path: Path) -> None:
    """Encodes :func:`video_frames` as an MP4 with PyAV (H.264, or MPEG-4 part 2 if absent)."""
    import av

    frames = video_frames(growing, blinking, rng)
    codec = video_codec()
    options = {}
    if codec == "libx264":  # no look-ahead or B-frames: faster to open, a plain stream
        options = {"crf": "18", "preset": "veryfast", "x264-params": "rc-lookahead=0:bframes=0"}
    buffer = io.BytesIO()  # muxed in memory and written once: many small writes are slow
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=DEMO_FPS, options=options)
        stream.width = stream.height = DEMO_SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # tiny frames: threads cost more than they save
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 400_000
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    path.write_bytes(buffer.getvalue())

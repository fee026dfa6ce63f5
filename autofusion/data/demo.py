"""Built-in demo datasets, one per task, generated offline and deterministically.

Without ``--data`` the search runs on one of these: they are written to disk as an ordinary
manifest (``id``, one column per modality, ``label``) so the demo goes through exactly the
same loading code as a user's data, and ``autofusion data demo TASK OUT`` lets users look
at one and copy its layout.

Every sample has four hidden binary attributes ``a, b, c, d``: ``a`` and ``c`` are visible
only in the task's first modality, ``b`` and ``d`` only in its second, and the label is
``2 * (a XOR b) + (c XOR d)``. Each modality alone therefore carries no information about
the label (the label is uniform given one modality's attributes), and additive late fusion
(a sum of per-modality logits) cannot represent XOR, so fusion that mixes features
(concatenation + MLP, attention) is clearly better: the fusion choice matters.

What each modality shows (first attribute, second attribute):

- image: size small/large, colour warm/cool (random shape, position, hue; noisy background);
- text: animal/vehicle words, fruit/tool words, among filler words in random order;
- audio: pitch low/high, tone steady/pulsed (random frequency, phase, rate; noise);
- video: a ball shrinking/growing, steady/blinking (random drift, size, colour; noise).
"""

from __future__ import annotations

import colorsys
import csv
import io
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

from autofusion.errors import ConfigError

TASKS: dict[str, tuple[str, ...]] = {
    "image_text": ("image", "text"),
    "image_audio": ("image", "audio"),
    "audio_video": ("audio", "video"),
    "text_audio": ("text", "audio"),
}

CLASS_NAMES: tuple[str, ...] = ("alpha", "beta", "gamma", "delta")
DEFAULT_NUM_SAMPLES = 1600  # all tasks: with ~1200 training samples small models find the XOR

IMAGE_SIZE = 32
SAMPLE_RATE = 8000
AUDIO_SECONDS = 0.5
VIDEO_FRAMES = 8
VIDEO_FPS = 8

_POOL_MIN_SAMPLES = 400  # below this, starting worker processes costs more than it saves
_MAX_PROCESSES = 8
_CHUNK = 50  # samples per pool task

_FOLDERS = {"image": "images", "audio": "audio", "video": "video"}
_SUFFIXES = {"image": ".png", "audio": ".wav", "video": ".mp4"}

# Text vocabulary: 4 groups of 5 key words and 40 filler words (60 words in all).
_WORD_GROUPS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("cat", "dog", "horse", "rabbit", "goat"), ("car", "train", "boat", "truck", "plane")),
    (("apple", "pear", "plum", "grape", "lemon"), ("hammer", "spoon", "brush", "ladder", "kettle")),
)
_FILLER: tuple[str, ...] = (
    "the", "a", "an", "this", "that", "some", "near", "over", "under", "beside",
    "behind", "with", "and", "or", "then", "today", "later", "quietly", "slowly", "quickly",
    "big", "small", "old", "new", "seen", "found", "left", "kept", "moved", "placed",
    "there", "here", "again", "often", "very", "just", "still", "maybe", "also", "from",
)


# ---------------------------------------------------------------- plan (latents, seeds)


def _resolve_task(task: str) -> tuple[str, ...]:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[task]


def _resolve_num_samples(task: str, num_samples: int | None) -> int:
    _resolve_task(task)
    if num_samples is None:
        return DEFAULT_NUM_SAMPLES
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"demo num_samples must be a positive integer, got {num_samples!r}")
    return num_samples


def _latents(num_samples: int, seed: int) -> np.ndarray:
    """The hidden attributes, an ``int64`` array ``[num_samples, 4]`` of columns a, b, c, d.

    The 16 attribute combinations are dealt out as evenly as possible (exactly evenly when
    ``num_samples`` is a multiple of 16) in a seeded random order, so classes are balanced
    and every modality is exactly uninformative on its own.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    combos = np.concatenate(
        [np.tile(np.arange(16), num_samples // 16), rng.permutation(16)[: num_samples % 16]]
    )
    combos = rng.permutation(combos)
    return (combos[:, None] >> np.arange(4)) & 1


def _labels(latents: np.ndarray) -> np.ndarray:
    """Label index ``2 * (a XOR b) + (c XOR d)`` of each row of :func:`_latents`."""
    a, b, c, d = latents.T
    return 2 * (a ^ b) + (c ^ d)


def _sample_seeds(num_samples: int, seed: int) -> list[np.random.SeedSequence]:
    """Independent per-sample seeds, so samples can be rendered in any order or process."""
    return np.random.SeedSequence(seed).spawn(num_samples)


# ---------------------------------------------------------------- modality renderers


def _noise_background(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A mid-grey background with per-pixel colour noise, as float in 0..255."""
    base = rng.uniform(70, 150)
    return base + rng.normal(0, 14, size=shape)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _hue_colour(hue_degrees: float, rng: np.random.Generator) -> tuple[int, int, int]:
    """An RGB colour of the given hue with random, fairly high saturation and brightness."""
    r, g, b = colorsys.hsv_to_rgb((hue_degrees % 360) / 360, rng.uniform(0.65, 1), rng.uniform(0.75, 1))
    return int(r * 255), int(g * 255), int(b * 255)


def _render_image(large: int, cool: int, rng: np.random.Generator, path: Path) -> None:
    """A small (0) or large (1) shape in a warm (0) or cool (1) colour on a noisy background.

    The shape (circle or square), its position, exact size, hue and brightness are random
    nuisances. Size rather than shape is the attribute: small CNNs that average-pool their
    feature map learn circle-vs-square too slowly when it only matters through an XOR.
    """
    hue = rng.uniform(170, 250) if cool else rng.uniform(-25, 50)  # cyan-blue vs red-yellow
    size = int(rng.integers(16, 23) if large else rng.integers(6, 11))
    x0, y0 = (int(v) for v in rng.integers(1, IMAGE_SIZE - size, size=2))
    image = Image.fromarray(_to_uint8(_noise_background(rng, (IMAGE_SIZE, IMAGE_SIZE, 3))))
    box = (x0, y0, x0 + size - 1, y0 + size - 1)
    draw = ImageDraw.Draw(image)
    (draw.rectangle if rng.integers(2) else draw.ellipse)(box, fill=_hue_colour(hue, rng))
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 8, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    Image.fromarray(_to_uint8(pixels), mode="RGB").save(path, format="PNG")


def _render_text(first: int, second: int, rng: np.random.Generator) -> str:
    """8-12 words: 2-3 words of one group per attribute among filler words, shuffled."""
    length = int(rng.integers(8, 13))
    words: list[str] = []
    for bit, groups in zip((first, second), _WORD_GROUPS):
        words += rng.choice(groups[bit], size=int(rng.integers(2, 4))).tolist()
    words += rng.choice(_FILLER, size=length - len(words)).tolist()
    return " ".join(words[i] for i in rng.permutation(len(words)))


def _render_audio(high: int, pulsed: int, rng: np.random.Generator, path: Path) -> None:
    """A low (0) or high (1) tone, steady (0) or amplitude-pulsed (1), with noise."""
    t = np.arange(int(SAMPLE_RATE * AUDIO_SECONDS)) / SAMPLE_RATE
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
    sf.write(buffer, np.clip(wave, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())


def _video_frames(growing: int, blinking: int, rng: np.random.Generator) -> np.ndarray:
    """``[frames, H, W, 3]`` uint8: a ball that shrinks (0) or grows (1), steady (0) or blinking (1).

    The ball drifts between two random points with a random colour. Growth is an attribute
    that only the frame order reveals (a temporal encoder sees it, frame averaging does
    not); left-vs-right motion is not used, as per-frame CNNs that average-pool space
    cannot see where the ball is.
    """
    small, large = rng.uniform(4, 7), rng.uniform(14, 19)
    sizes = np.linspace(small, large, VIDEO_FRAMES)[:: 1 if growing else -1]
    centres = np.linspace(*rng.uniform(9.5, IMAGE_SIZE - 9.5, size=(2, 2)), VIDEO_FRAMES)
    visible = np.ones(VIDEO_FRAMES, bool)
    if blinking:  # every other frame, starting on or off
        visible = (np.arange(VIDEO_FRAMES) + rng.integers(2)) % 2 == 0
    colour = _hue_colour(rng.uniform(0, 360), rng)
    background = _noise_background(rng, (IMAGE_SIZE, IMAGE_SIZE, 3))
    noise = rng.normal(0, 6, size=(VIDEO_FRAMES, *background.shape))
    strip = Image.fromarray(_to_uint8(background + noise).reshape(-1, IMAGE_SIZE, 3))  # frames stacked
    draw = ImageDraw.Draw(strip)
    for t in np.flatnonzero(visible):
        (cx, cy), r = centres[t], sizes[t] / 2
        cy += t * IMAGE_SIZE
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    return np.asarray(strip).reshape(VIDEO_FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3)


def _video_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _render_video(growing: int, blinking: int, rng: np.random.Generator, path: Path) -> None:
    """Encodes :func:`_video_frames` as an MP4 with PyAV (H.264, or MPEG-4 part 2 if absent)."""
    frames = _video_frames(growing, blinking, rng)
    codec = _video_codec()
    options = {}
    if codec == "libx264":  # no look-ahead or B-frames: faster to open, a plain stream
        options = {"crf": "18", "preset": "veryfast", "x264-params": "rc-lookahead=0:bframes=0"}
    buffer = io.BytesIO()  # muxed in memory and written once: many small writes are slow
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=VIDEO_FPS, options=options)
        stream.width = stream.height = IMAGE_SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # tiny frames: threads cost more than they save
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 400_000
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    path.write_bytes(buffer.getvalue())


# ---------------------------------------------------------------- writing


def _render_cell(
    modality: str, bits: tuple[int, int], rng: np.random.Generator, out_dir: Path, stem: str
) -> str:
    """Renders one modality of one sample; returns its manifest cell (text or relative path)."""
    if modality == "text":
        return _render_text(*bits, rng)
    relative = f"{_FOLDERS[modality]}/{stem}{_SUFFIXES[modality]}"
    renderer = {"image": _render_image, "audio": _render_audio, "video": _render_video}[modality]
    renderer(*bits, rng, out_dir / relative)
    return relative


def _render_sample(
    modalities: tuple[str, ...], latent: np.ndarray, seed: np.random.SeedSequence, out_dir: Path,
    stem: str,
) -> list[str]:
    """The modality cells of one sample: modality 1 shows (a, c), modality 2 shows (b, d)."""
    rng = np.random.default_rng(seed)
    a, b, c, d = (int(v) for v in latent)
    return [_render_cell(m, bits, rng, out_dir, stem) for m, bits in zip(modalities, ((a, c), (b, d)))]


def _write_text_atomically(path: Path, text: str) -> None:
    """Writes ``text`` to a temp file beside ``path`` and renames it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _render_chunk(
    job: tuple[tuple[str, ...], np.ndarray, list[np.random.SeedSequence], Path, list[str]],
) -> list[list[str]]:
    """Renders a run of samples (one pool task); returns their modality cells in order."""
    modalities, latents, seeds, out_dir, stems = job
    return [
        _render_sample(modalities, latent, sample_seed, out_dir, stem)
        for latent, sample_seed, stem in zip(latents, seeds, stems)
    ]


def _pool_size(count: int) -> int:
    """Worker processes for ``count`` samples; 1 (no pool) for small sets and in daemons."""
    if count < _POOL_MIN_SAMPLES or multiprocessing.current_process().daemon:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, _MAX_PROCESSES)


def _render_all(
    modalities: tuple[str, ...], latents: np.ndarray, seeds: list[np.random.SeedSequence],
    out_dir: Path, stems: list[str],
) -> list[list[str]]:
    """The modality cells of every sample, in order, rendered in worker processes if worth it.

    Video encoding and file creation dominate; processes roughly halve the time on 2 cores.
    Every sample has its own seed, so the output does not depend on the worker count.
    ``forkserver``/``spawn`` avoid forking a threaded parent (Ray, torch); if the pool
    breaks (e.g. a script without an ``if __name__ == "__main__"`` guard), render serially.
    """
    jobs = [
        (modalities, latents[i : i + _CHUNK], seeds[i : i + _CHUNK], out_dir, stems[i : i + _CHUNK])
        for i in range(0, len(stems), _CHUNK)
    ]
    workers = _pool_size(len(stems))
    if workers > 1:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
                return [cells for chunk in pool.map(_render_chunk, jobs) for cells in chunk]
        except BrokenProcessPool:
            pass
    return [cells for job in jobs for cells in _render_chunk(job)]


def write_demo(task: str, out_dir: str | Path, *, num_samples: int | None = None, seed: int = 0) -> Path:
    """Writes the demo dataset of ``task`` under ``out_dir``; returns ``out_dir/manifest.csv``.

    Media files go to ``images/``, ``audio/`` and ``video/`` and the manifest, holding paths
    relative to its folder, is written last and atomically, so a folder with a manifest is
    complete. The same ``task``, ``num_samples`` and ``seed`` give byte-identical output.
    """
    modalities = _resolve_task(task)
    count = _resolve_num_samples(task, num_samples)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for modality in modalities:
        if modality in _FOLDERS:
            (out_dir / _FOLDERS[modality]).mkdir(exist_ok=True)

    latents = _latents(count, seed)
    width = max(5, len(str(count - 1)))
    stems = [f"{i:0{width}d}" for i in range(count)]
    cells = _render_all(modalities, latents, _sample_seeds(count, seed), out_dir, stems)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", *modalities, "label"])
    for i, (row, label) in enumerate(zip(cells, _labels(latents))):
        writer.writerow([i, *row, CLASS_NAMES[label]])
    manifest = out_dir / "manifest.csv"
    _write_text_atomically(manifest, buffer.getvalue())
    return manifest


def demo_manifest(task: str, cache_root: Path, *, num_samples: int | None = None, seed: int = 0) -> Path:
    """Returns the demo manifest of ``task``, generating it once under the cache.

    The dataset lives in ``cache_root/demo/<task>-<num_samples>-<seed>/`` and is reused when
    that folder holds a manifest (written last, so only complete folders have one). A new
    one is generated in a temporary sibling folder and renamed into place, so concurrent
    callers (e.g. parallel trials) never see or reuse a half-written folder.
    """
    count = _resolve_num_samples(task, num_samples)
    folder = Path(cache_root) / "demo" / f"{task}-{count}-{seed}"
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        return manifest
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_demo(task, staging, num_samples=count, seed=seed)
        if manifest.is_file():  # another caller finished first
            return manifest
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete leftover, if any
        try:
            os.rename(staging, folder)
        except OSError:
            if not manifest.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest

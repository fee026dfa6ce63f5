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
- video: a ball shrinking/growing, steady/blinking (random drift, size, colour; noise);
- tabular: a number around -1/1 (``score``, 3% missing), a category from p, q, r / s, t, u
  (``grade``), beside a number (``noise``, 10% missing) and a category (``shop``, 30
  values, some rare) that carry nothing: four columns, one input.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from autofusion.errors import ConfigError
from autofusion.modalities import MODALITIES

TASKS: dict[str, tuple[str, ...]] = {
    "image_text": ("image", "text"),
    "image_audio": ("image", "audio"),
    "audio_video": ("audio", "video"),
    "text_audio": ("text", "audio"),
    "image_tabular": ("image", "tabular"),
}

CLASS_NAMES: tuple[str, ...] = ("alpha", "beta", "gamma", "delta")
DEFAULT_NUM_SAMPLES = 1600  # all tasks: with ~1200 training samples small models find the XOR


_POOL_MIN_SAMPLES = 400  # below this, starting worker processes costs more than it saves
_MAX_PROCESSES = 8
_CHUNK = 50  # samples per pool task

_FOLDERS = {"image": "images", "audio": "audio", "video": "video"}
_SUFFIXES = {"image": ".png", "audio": ".wav", "video": ".mp4"}


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


# ---------------------------------------------------------------- writing


def _render_cell(
    modality: str, bits: tuple[int, int], rng: np.random.Generator, out_dir: Path, stem: str
) -> str | dict:
    """Renders one modality of one sample; returns its manifest cell (text or relative path),
    or a modality's cells by column (tabular)."""
    mod = MODALITIES.get(modality)
    if modality not in _FOLDERS:
        return mod.render_demo(bits, rng, out_dir)
    relative = f"{_FOLDERS[modality]}/{stem}{_SUFFIXES[modality]}"
    mod.render_demo(bits, rng, out_dir / relative)
    return relative


def _render_sample(
    modalities: tuple[str, ...], latent: np.ndarray, seed: np.random.SeedSequence, out_dir: Path,
    stem: str,
) -> list[str | dict]:
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
) -> list[list[str | dict]]:
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
) -> list[list[str | dict]]:
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
    rows = []
    for i, (row, label) in enumerate(zip(cells, _labels(latents))):
        record: dict = {"id": i}
        for m, cell in zip(modalities, row):
            record.update(cell if isinstance(cell, dict) else {m: cell})
        rows.append({**record, "label": CLASS_NAMES[label]})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
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


def write_shared_demo(task: str, out_dir: str | Path, rows: int, *, files: int, seed: int = 0) -> Path:
    """The demo of ``task`` grown to ``rows`` rows that share the files and texts of ``files``
    samples (row ``i`` repeats sample ``i % files``, label included), as posts share a photo or
    a catalogue shares one picture per model; returns ``out_dir/manifest.csv``. For measuring
    how the data stages scale with rows against distinct files (``benchmarks/scale.py``)."""
    if isinstance(rows, bool) or not isinstance(rows, int) or not isinstance(files, int) or not 1 <= files <= rows:
        raise ConfigError(f"a shared demo needs 1 <= files <= rows, got files={files!r}, rows={rows!r}")
    base = write_demo(task, out_dir, num_samples=files, seed=seed)
    with open(base, newline="", encoding="utf-8") as handle:
        samples = list(csv.DictReader(handle))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(samples[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({**samples[i % files], "id": i} for i in range(rows))
    _write_text_atomically(base, buffer.getvalue())
    return base

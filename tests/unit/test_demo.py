"""The built-in demo datasets: layout, decodable files, determinism, caching, XOR design."""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from scipy.optimize import Bounds, LinearConstraint, milp

from autofusion.data import demo
from autofusion.data.demo import TASKS, demo_manifest, write_demo
from autofusion.errors import ConfigError
from autofusion.modalities.text import FILLER, WORD_GROUPS

N = 40


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_image(path: Path) -> None:
    with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32))


def _check_audio(path: Path) -> None:
    wave, rate = sf.read(path)
    assert rate == 8000 and wave.shape == (4000,)
    assert sf.info(path).subtype == "PCM_16"


def _check_video(path: Path) -> None:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 8 and all(f.shape == (32, 32, 3) for f in frames)


def _check_text(text: str) -> None:
    vocabulary = set(FILLER) | {w for groups in WORD_GROUPS for g in groups for w in g}
    words = text.split()
    assert 8 <= len(words) <= 12 and set(words) <= vocabulary


TABULAR_COLUMNS = ["score", "grade", "noise", "shop"]


def _check_tabular(row: dict[str, str]) -> None:
    assert row["grade"] in "pqrstu" and row["shop"].startswith("shop")
    for number in (row["score"], row["noise"]):
        assert number == "" or np.isfinite(float(number))


@pytest.mark.parametrize("task", sorted(TASKS))
def test_write_demo_layout_and_files(task: str, tmp_path: Path) -> None:
    manifest = write_demo(task, tmp_path, num_samples=N)
    assert manifest == tmp_path / "manifest.csv"
    with manifest.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    columns = [c for m in TASKS[task] for c in (TABULAR_COLUMNS if m == "tabular" else [m])]
    assert header == ["id", *columns, "label"]
    rows = _rows(manifest)
    assert [r["id"] for r in rows] == [str(i) for i in range(N)]
    checks = {"image": _check_image, "audio": _check_audio, "video": _check_video}
    for row in rows:
        for modality in TASKS[task]:
            if modality == "text":
                _check_text(row["text"])
                continue
            if modality == "tabular":
                _check_tabular(row)
                continue
            relative = row[modality]
            assert not Path(relative).is_absolute() and ".." not in Path(relative).parts
            checks[modality](tmp_path / relative)
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == {"alpha", "beta", "gamma", "delta"}
    assert min(counts.values()) >= N // 4 - 2


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    first, second, other = (write_demo("image_text", tmp_path / n, num_samples=N, seed=s)
                            for n, s in (("a", 0), ("b", 0), ("c", 1)))
    assert first.read_text() == second.read_text()
    assert _files(first.parent) == _files(second.parent)
    assert other.read_text() != first.read_text()
    assert (first.parent / "images/00000.png").read_bytes() != (
        other.parent / "images/00000.png"
    ).read_bytes()


def test_audio_and_video_bytes_are_deterministic(tmp_path: Path) -> None:
    first = write_demo("audio_video", tmp_path / "a", num_samples=8)
    second = write_demo("audio_video", tmp_path / "b", num_samples=8)
    assert _files(first.parent) == _files(second.parent)


def test_process_pool_gives_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = write_demo("audio_video", tmp_path / "serial", num_samples=24)
    monkeypatch.setattr(demo, "_pool_size", lambda count: 2)
    monkeypatch.setattr(demo, "_CHUNK", 5)
    # A broken pool must fail this test, not fall back to serial rendering.
    monkeypatch.setattr(demo, "BrokenProcessPool", type("NoFallback", (Exception,), {}))
    pooled = write_demo("audio_video", tmp_path / "pooled", num_samples=24)
    assert _files(serial.parent) == _files(pooled.parent)


def test_default_sizes() -> None:
    assert TASKS and all(demo._resolve_num_samples(task, None) == 1600 for task in TASKS)


def test_demo_manifest_is_generated_once(tmp_path: Path) -> None:
    manifest = demo_manifest("image_audio", tmp_path, num_samples=16)
    assert manifest == tmp_path / "demo" / "image_audio-16-0" / "manifest.csv"
    assert len(_rows(manifest)) == 16
    stamps = {p: p.stat().st_mtime_ns for p in (manifest, manifest.parent / "images/00000.png")}
    assert demo_manifest("image_audio", tmp_path, num_samples=16) == manifest
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["image_audio-16-0"]  # no staging left


def test_demo_manifest_replaces_a_folder_without_manifest(tmp_path: Path) -> None:
    partial = tmp_path / "demo" / "text_audio-16-3"
    (partial / "audio").mkdir(parents=True)
    (partial / "audio" / "00000.wav").write_bytes(b"half written")
    manifest = demo_manifest("text_audio", tmp_path, num_samples=16, seed=3)
    assert manifest == partial / "manifest.csv" and len(_rows(manifest)) == 16
    _check_audio(partial / "audio" / "00000.wav")


def test_unknown_task() -> None:
    message = "unknown task 'x'; known: audio_video, image_audio, image_tabular, image_text, text_audio"
    for call in (lambda: write_demo("x", "unused"), lambda: demo_manifest("x", Path("unused"))):
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            call()


def test_bad_num_samples() -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        write_demo("image_text", "unused", num_samples=0)


# ------------------------------------------------------------------ the XOR design


def test_each_modality_alone_says_nothing_about_the_label() -> None:
    latents = demo._latents(1600, seed=0)  # columns a, b, c, d; modality 1 sees a, c
    labels = demo._labels(latents)
    assert np.bincount(labels).tolist() == [400] * 4
    for columns in ([0, 2], [1, 3]):  # the first modality's attributes, the second's
        for values in itertools.product((0, 1), repeat=2):
            seen = (latents[:, columns] == values).all(axis=1)
            assert np.bincount(labels[seen], minlength=4).tolist() == [100] * 4
    # ... while both modalities together determine it.
    assert len({(tuple(x), y) for x, y in zip(latents.tolist(), labels)}) == 16


def _best_additive_accuracy() -> float:
    """Best accuracy of any late fusion ``argmax_k s_k(modality 1) + t_k(modality 2)`` with
    perfect encoders: a small mixed-integer program over the 16 equally likely latents."""
    combos = (np.arange(16)[:, None] >> np.arange(4)) & 1
    labels = demo._labels(combos)
    first, second = 2 * combos[:, 0] + combos[:, 2], 2 * combos[:, 1] + combos[:, 3]
    big_m, rows = 100.0, []
    for j, y in enumerate(labels):  # scores: s[k, first] (16), t[k, second] (16), right[j] (16)
        for k in set(range(4)) - {y}:
            row = np.zeros(48)
            row[[4 * y + first[j], 16 + 4 * y + second[j]]] += 1
            row[[4 * k + first[j], 16 + 4 * k + second[j]]] -= 1
            row[32 + j] = -big_m  # margin >= 1 where right[j] = 1
            rows.append(row)
    result = milp(
        np.r_[np.zeros(32), -np.ones(16)],
        constraints=LinearConstraint(np.array(rows), 1 - big_m, np.inf),
        integrality=np.r_[np.zeros(32), np.ones(16)],
        bounds=Bounds(np.r_[np.full(32, -10.0), np.zeros(16)], np.r_[np.full(32, 10.0), np.ones(16)]),
    )
    assert result.success
    return -result.fun / 16


def test_late_fusion_cannot_represent_the_label() -> None:
    # Mixing fusion can reach 100 % (the label is a function of both modalities' attributes);
    # summing per-modality logits cannot get past 11 of 16 attribute combinations.
    assert _best_additive_accuracy() == pytest.approx(11 / 16)

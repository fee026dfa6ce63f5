"""Preprocessing settings a space leaves unset are chosen from the training rows: longer texts
get a longer max_length, larger images a larger size, clips their own rate and length; the
demo data gets exactly its own small settings; a setting the space gives is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from PIL import Image

from autofusion.data.demo import demo_manifest
from autofusion.data.prepare import prepare_data
from autofusion.spaces.load import SPACES_DIR, load_space


def _manifest(tmp_path: Path, *, side: int, words: int, n: int = 30) -> Path:
    rng = np.random.default_rng(side + words)
    rows = []
    for i in range(n):
        p = tmp_path / "img" / f"{side}-{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side + 7, 3), dtype=np.uint8)).save(p)
        text = " ".join(f"w{int(w)}" for w in rng.integers(0, 50, words + int(rng.integers(0, 3))))
        rows.append({"image": str(p), "text": text, "label": "ab"[i % 2]})
    path = tmp_path / f"m-{side}-{words}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_longer_texts_and_larger_images_get_larger_settings(tmp_path):
    space = load_space("image_text")
    small = prepare_data(_manifest(tmp_path, side=24, words=5), space, home=tmp_path / "h")
    large = prepare_data(_manifest(tmp_path, side=200, words=60), space, home=tmp_path / "h")
    assert small.meta.prep["text"]["max_length"] < large.meta.prep["text"]["max_length"]
    assert small.meta.prep["image"]["size"] < large.meta.prep["image"]["size"]
    assert large.meta.prep["text"]["max_length"] >= 56  # the 95th percentile of 60-62 words, rounded up
    assert large.meta.prep["image"]["size"] == 96  # 200 px photos: capped on a CPU
    assert large.arrays["image"].shape[1:] == (3, 96, 96)
    assert any("image.size=96" in c and "capped" in c for c in large.meta.chosen)


def test_gpu_allows_larger_images(tmp_path):
    space = load_space("image_text")
    data = prepare_data(_manifest(tmp_path, side=200, words=5), space, home=tmp_path / "h", cuda=True)
    assert data.meta.prep["image"]["size"] == 208  # the median shorter side, rounded up to 16, under the GPU cap


def test_a_setting_the_space_gives_is_kept(tmp_path):
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["modalities"] = {"image": {"size": 40}, "text": {"max_length": 7}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    data = prepare_data(_manifest(tmp_path, side=200, words=60), load_space(space=path), home=tmp_path / "h")
    assert data.meta.prep["image"]["size"] == 40 and data.meta.prep["text"]["max_length"] == 7
    assert data.meta.chosen == []


def test_audio_rate_and_length_from_the_clips(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        p = tmp_path / f"{i}.wav"
        seconds = 1.0 + 0.05 * i
        sf.write(p, rng.uniform(-0.3, 0.3, int(22050 * seconds)).astype(np.float32), 22050)
        rows.append({"audio": str(p), "text": f"clip number {i} of many", "label": "xy"[i % 2]})
    path = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    data = prepare_data(path, load_space("text_audio"), home=tmp_path / "h")
    prep = data.meta.prep["audio"]
    assert prep["sample_rate"] == 16000  # 22.05 kHz clips, capped at 16 kHz
    assert 2.0 <= prep["seconds"] <= 2.25  # the 95th percentile of 1.0-2.15 s, rounded up to 0.25 s
    assert data.arrays["audio"].shape[1] == int(round(16000 * prep["seconds"]))


@pytest.mark.parametrize("task, expected", [
    ("image_text", {"image": {"size": 32}, "text": {"max_length": 16}}),
    ("audio_video", {"audio": {"sample_rate": 8000, "seconds": 0.5}, "video": {"frames": 8, "size": 32}}),
])
def test_the_demo_gets_its_own_small_settings(tmp_path, task, expected):
    """The demo keeps its small settings because its data is small: nothing is resized, resampled or padded."""
    manifest = demo_manifest(task, tmp_path / "home", num_samples=48)
    data = prepare_data(manifest, load_space(task), home=tmp_path / "home")
    for modality, settings in expected.items():
        for key, value in settings.items():
            assert data.meta.prep[modality][key] == value, (modality, key, data.meta.chosen)

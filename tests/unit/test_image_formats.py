"""Image files as users have them, read alike by the decode cache's reader, the pixel-statistics
reader and the pretrained encoders' reader: more than 8 bits a channel (16-bit greyscale scans,
float TIFFs) with their contrast, where Pillow's own conversion clips them white or black; an
iPhone's HEIC photos, found as an image column and decoded."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autofusion.data.inspection import inspect_facts
from autofusion.modalities.base import eight_bit
from autofusion.modalities.image import decode_image
from autofusion.models.encoders._pretrained import decode_crop
from autofusion.models.encoders.image import decode_small

READERS = [lambda p: decode_image(p, 16), lambda p: decode_small(p, 16), lambda p: decode_crop(p, 16)]


@pytest.mark.parametrize("read", READERS)
def test_a_12_bit_scan_in_a_16_bit_png_keeps_its_gradient(tmp_path, read):
    ramp = np.tile(np.linspace(0, 4095, 64), (64, 1)).astype(np.uint16)  # dark to bright, left to right
    Image.fromarray(ramp).save(tmp_path / "scan.png")
    assert Image.open(tmp_path / "scan.png").mode.startswith("I")
    x = read(tmp_path / "scan.png")[0].astype(float)
    cols = x.mean(axis=0)
    assert cols[0] < 20 and cols[-1] > 235 and np.all(np.diff(cols) >= 0)  # not clipped white


@pytest.mark.parametrize("read", READERS)
def test_a_float_image_within_0_and_1_is_scaled_not_blackened(tmp_path, read):
    Image.fromarray(np.full((32, 32), 0.5, np.float32), "F").save(tmp_path / "half.tiff")
    assert abs(read(tmp_path / "half.tiff").mean() - 127.5) < 1.5


def test_an_8_bit_image_is_unchanged():
    im = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), "L")
    assert eight_bit(im) is im
    flat = eight_bit(Image.fromarray(np.full((4, 4), 7, np.int32), "I"))  # within 0..255: as it is
    assert np.asarray(flat).tolist() == [[7] * 4] * 4


@pytest.mark.parametrize("read", READERS)
def test_a_heic_photo_is_an_image(tmp_path, read):
    pytest.importorskip("pillow_heif")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.heic")
    r, g, b = read(tmp_path / "red.heic").reshape(3, -1).mean(axis=1)
    assert r > 150 and g < 80 and b < 80


def test_a_column_of_heic_files_is_an_image_column(tmp_path):
    import pandas as pd

    pytest.importorskip("pillow_heif")
    (tmp_path / "photos").mkdir()
    for i in range(24):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(tmp_path / "photos" / f"{i}.HEIC")
    pd.DataFrame({"photo": [f"photos/{i}.HEIC" for i in range(24)], "label": ["a", "b"] * 12}).to_csv(
        tmp_path / "m.csv", index=False)
    facts = inspect_facts(tmp_path / "m.csv", home=tmp_path / "home")
    assert facts["roles"]["image"] == "photo" and facts["kept"] == 24

"""Reading manifests as other tools save them: compressed (``.gz``, ``.bz2``, ``.xz``, one file in
a ``.zip``), Excel's UTF-16 "Unicode Text" export, a separator at the end of every line. The
formats themselves: test_manifest.py."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from autofusion.data.reading import read_manifest
from autofusion.errors import DataError
from tests.unit.test_manifest import ROWS, write


@pytest.mark.parametrize("name", ["m.csv.gz", "m.tsv.bz2", "m.jsonl.xz", "m.csv.zip", "data.zip"])
def test_a_compressed_manifest_reads_as_the_file_it_holds(tmp_path, name):
    import bz2
    import gzip
    import lzma
    import zipfile

    df = pd.DataFrame(ROWS)
    inner = {"data.zip": "m.csv"}.get(name, name.rsplit(".", 1)[0])
    (tmp_path / "plain").mkdir()
    plain = write(df, tmp_path / "plain" / inner)
    path = tmp_path / name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as z:
            z.write(plain, inner)
    else:
        opener = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}[name.rsplit(".", 1)[1]]
        with opener(path, "wb") as f:
            f.write(plain.read_bytes())
    got = read_manifest(path)
    assert got.astype(str).to_dict("records") == ROWS


def test_a_compressed_manifest_that_cannot_be_read_says_why(tmp_path):
    import zipfile

    (tmp_path / "fake.csv.gz").write_text("not gzip")
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.csv", "text,label\nx,y\n")
        z.writestr("images/b.png", "")
    for name, words in (("fake.csv.gz", "cannot be uncompressed as .gz"),
                        ("two.zip", "holds 2 files (a.csv, images/b.png); a .zip manifest holds one")):
        with pytest.raises(DataError, match=re.escape(words)):
            read_manifest(tmp_path / name)


def test_excels_unicode_text_export_utf16_with_tabs_reads(tmp_path):
    pd.DataFrame(ROWS).to_csv(tmp_path / "m.txt", sep="\t", index=False, encoding="utf-16")
    assert read_manifest(tmp_path / "m.txt").astype(str).to_dict("records") == ROWS


def test_a_trailing_separator_on_every_line_adds_no_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image,text,label,\na.png,hi,x,\nb.png,yo,y,\n")
    assert list(read_manifest(path).columns) == ["image", "text", "label"]

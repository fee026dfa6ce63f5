"""Reading manifests as users have them: a folder that holds one; compressed (``.gz``, ``.bz2``,
``.xz``, one file in a ``.zip``); Excel's UTF-16 "Unicode Text" export; a separator at the end of
every line. The formats themselves: test_manifest.py."""

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


def test_a_folder_with_one_manifest_is_that_manifest(tmp_path):
    from click.testing import CliRunner

    from autofusion.cli import cli

    rows = pd.DataFrame({"text": [f"words about thing {i}" for i in range(30)], "label": ["a", "b", "c"] * 10})
    (tmp_path / "one").mkdir()
    rows.to_csv(tmp_path / "one" / "reviews.csv", index=False)
    (tmp_path / "many").mkdir()
    for name in ("a.csv", "b.jsonl"):
        write(rows, tmp_path / "many" / name)
    env = {"AUTOFUSION_HOME": str(tmp_path / "home")}
    res = CliRunner().invoke(cli, ["data", "inspect", str(tmp_path / "one")], env=env)
    assert res.exit_code == 0 and f"Manifest {tmp_path / 'one' / 'reviews.csv'}" in res.output, res.output
    res = CliRunner().invoke(cli, ["data", "inspect", str(tmp_path / "many")], env=env)
    assert res.exit_code == 2 and "is a folder with 2 manifests (a.csv, b.jsonl); give the one to use" in res.output
    rows.to_csv(tmp_path / "many" / "manifest.csv", index=False)  # among several, the one named so
    res = CliRunner().invoke(cli, ["data", "inspect", str(tmp_path / "many")], env=env)
    assert res.exit_code == 0 and "manifest.csv" in res.output.splitlines()[0], res.output

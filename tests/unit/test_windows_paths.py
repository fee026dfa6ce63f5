"""File cells as other tools write them. A manifest written on Windows: relative file paths with
backslashes are read on Linux and macOS as the same files, for training and for prediction; an
absolute Windows path says what it is instead of a bare "file not found". A ``file://`` URI is
its path. A relative path written from the project's folder is found from there."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from autofusion.data.inspection import inspect_facts
from autofusion.data.rows import resolve_path
from autofusion.modalities.base import DecodeError, open_source
from autofusion.serving.predict import _absolute


def _manifest(root: Path, paths: list[str]) -> Path:
    (root / "images").mkdir()
    for i in range(len(paths)):
        Image.new("RGB", (8, 8), (30 * (i % 8), 0, 0)).save(root / "images" / f"{i}.png")
    df = pd.DataFrame({"image": paths, "label": ["a", "b"] * (len(paths) // 2)})
    df.to_csv(root / "m.csv", index=False)
    return root / "m.csv"


def test_relative_backslash_paths_are_the_same_files(tmp_path):
    path = _manifest(tmp_path, [f"images\\{i}.png" for i in range(24)])
    facts = inspect_facts(path, home=tmp_path / "home")
    assert facts["bad_rows"]["count"] == 0 and facts["kept"] == 24
    assert resolve_path(tmp_path, "images\\3.png") == str(tmp_path / "images" / "3.png")
    assert _absolute(tmp_path, "images\\3.png") == str(tmp_path / "images" / "3.png")  # predict reads them too
    assert resolve_path(tmp_path, "images\\none.png") == str(tmp_path / "images\\none.png")  # no such file: as written


def test_an_absolute_windows_path_says_so():
    with pytest.raises(DecodeError, match="a Windows path; give paths relative to the manifest's folder"):
        open_source("/data/C:\\Users\\ann\\images\\0.png")
    with pytest.raises(DecodeError, match="^file not found$"):
        open_source("/data/images/0.png")


def test_a_file_uri_is_its_path(tmp_path):
    path = _manifest(tmp_path, [(tmp_path / "images" / f"{i}.png").as_uri() for i in range(24)])
    assert inspect_facts(path, home=tmp_path / "home")["kept"] == 24
    assert resolve_path(tmp_path, "file:///data/my%20photo.png") == "/data/my photo.png"


def test_paths_written_from_the_project_folder_are_found_from_there(tmp_path, monkeypatch):
    """``data/train.csv`` holding ``data/images/0.png``: relative to the folder the user works in,
    not to the manifest's; found when the manifest's folder has no such file."""
    data = tmp_path / "data"
    data.mkdir()
    path = _manifest(data, [f"data/images/{i}.png" for i in range(24)])
    monkeypatch.chdir(tmp_path)
    assert inspect_facts(path, home=tmp_path / "home")["kept"] == 24
    assert resolve_path(data, "data/images/3.png") == str(tmp_path / "data" / "images" / "3.png")
    assert resolve_path(data, "images/3.png") == str(data / "images" / "3.png")  # the manifest's folder first

"""Grouped splits: rows that share a group (a patient, a speaker, one image file reused by many
rows) stay in one split, from ``assign_splits`` up to ``prepare_data`` with ``--columns
group=COLUMN`` or ``data.group``; ``data inspect`` warns when file paths repeat across the
rows of a manifest without a split column."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from autofusion.data.inspection import inspect_facts, inspect_manifest
from autofusion.data.splits import TEST, TRAIN, VAL, assign_splits, group_keys
from autofusion.errors import DataError
from tests.unit.test_prepare import custom, png, prep, write


def _one_split_per_group(split: np.ndarray, groups) -> None:
    per = pd.Series(split).groupby(np.asarray(groups, dtype=object)).nunique()
    assert (per == 1).all(), per[per > 1]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("stratified", [True, False])
def test_no_group_crosses_splits(seed, stratified):
    rng = np.random.default_rng(seed)
    groups = np.array([f"p{g}" for g in rng.integers(0, 40, 300)], dtype=object)  # 40 patients, uneven sizes
    y = rng.integers(0, 3, 300)
    split = assign_splits(np.full(300, -1, np.int8), y if stratified else None, 0.15, 0.15, seed, groups)
    _one_split_per_group(split, groups)
    assert {TRAIN, VAL, TEST} <= set(split.tolist())
    assert 0.05 < (split == TEST).mean() < 0.35 and (split == TRAIN).mean() > 0.4  # the fractions, roughly
    again = assign_splits(np.full(300, -1, np.int8), y if stratified else None, 0.15, 0.15, seed, groups)
    assert np.array_equal(split, again)  # seeded


def test_rows_without_a_split_join_their_groups_given_split():
    groups = np.array(["a", "a", "b", "b", *[f"g{i}" for i in range(30)]], dtype=object)
    given = np.full(len(groups), -1, np.int8)
    given[0], given[2] = TEST, VAL  # one row of a and of b given
    split = assign_splits(given, None, 0.15, 0.15, 0, groups)
    assert split[1] == TEST and split[3] == VAL
    _one_split_per_group(split, groups)


def test_too_few_groups_is_a_one_line_error():
    with pytest.raises(DataError, match=r"too few groups \(1\) to split off a val set"):
        assign_splits(np.full(10, -1, np.int8), None, 0.15, 0.5, 0, np.array(["a"] * 5 + ["b"] * 5, dtype=object))


def test_an_empty_group_cell_is_a_group_of_its_own_row():
    keys = group_keys(pd.Series(["x", None, "", " x ", float("nan")]))
    assert keys[0] == keys[3] == "x" and len({keys[1], keys[2], keys[4]}) == 3


def _reused_images(root: Path, n_files: int = 12, per_file: int = 4, patient: bool = True) -> list[dict]:
    """Rows that reuse each image file ``per_file`` times (one label per file, as for a
    photo described by several captions); two files per patient."""
    out = []
    for f in range(n_files):
        name = png(root / "img" / f"{f}.png", f)
        for k in range(per_file):
            row = {"image": f"img/{name}", "caption": f"word{k} caption {f} {k}", "label": "abc"[f % 3]}
            out.append({**row, "patient": f"p{f // 2}"} if patient else row)
    return out


def test_grouping_by_the_image_column_keeps_each_file_in_one_split(tmp_path):
    path = write(_reused_images(tmp_path, patient=False), tmp_path / "m.csv")
    d = prep(path, columns={"group": ["image"]})
    assert d.meta.columns["group"] == ["image"] and d.meta.columns["image"] == ["image"]  # shared with the modality
    _one_split_per_group(d.split, d.raw["image"])
    assert {TRAIN, VAL, TEST} <= set(d.split.tolist())
    ungrouped = prep(path)
    per = pd.Series(ungrouped.split).groupby(ungrouped.raw["image"]).nunique()
    assert (per > 1).any()  # without the group some file's rows land in two splits: the leak


def test_data_group_in_the_space_and_a_group_column_found_by_name(tmp_path):
    path = write(_reused_images(tmp_path), tmp_path / "m.csv")
    d = prep(path, custom(tmp_path, group="patient"))
    patients = pd.read_csv(path)["patient"]
    _one_split_per_group(d.split, patients)
    by_name = prep(path)  # "patient" is one of the group role's names
    assert by_name.meta.columns["group"] == ["patient"]
    _one_split_per_group(by_name.split, patients)
    with pytest.raises(DataError, match=r"column 'nope' \(data.columns group\) not found"):
        prep(path, custom(tmp_path, group="nope"))


def test_inspect_warns_when_file_paths_repeat_without_a_split_column(tmp_path):
    records = _reused_images(tmp_path, patient=False)
    path = write(records, tmp_path / "m.csv")
    f = inspect_facts(path, task="image_text", home=tmp_path / "home")
    assert len(f["warnings"]) == 1
    assert "image: 12 file(s) appear in more than one row (48 rows" in f["warnings"][0]
    assert "--columns group=image" in f["warnings"][0]
    out = StringIO()
    inspect_manifest(path, task="image_text", home=tmp_path / "home", console=Console(file=out, width=200))
    assert "Warning: image: 12 file(s)" in out.getvalue()
    grouped = inspect_facts(path, task="image_text", columns="group=image", home=tmp_path / "home")
    assert grouped["warnings"] == [] and grouped["split"]["group"] == "image"
    with_split = write([{**r, "split": "train" if i % 5 else "test"} for i, r in enumerate(records)],
                       tmp_path / "s.csv")
    assert inspect_facts(with_split, task="image_text", home=tmp_path / "home")["warnings"] == []

"""Reading manifests (every format, every way a file can be unusable), finding column roles
(synonyms, ambiguity, ``--columns``) and the train/val/test split (seeded and stratified,
or from a split column). No decoding here: see test_prepare.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autofusion.data.manifest import (
    candidate_columns,
    parse_columns_flag,
    resolve_columns,
)
from autofusion.data.reading import read_manifest, sheet_note
from autofusion.data.splits import TEST, TRAIN, VAL, assign_splits, parse_split_column
from autofusion.errors import DataError

ROWS = [
    {"image": f"img/{i}.png", "text": f"a caption {i}", "label": "abc"[i % 3]} for i in range(6)
]


def write(df: pd.DataFrame, path: Path) -> Path:
    """Writes ``df`` in the format ``path``'s extension names."""
    fmt = path.suffix
    if fmt == ".csv":
        df.to_csv(path, index=False)
    elif fmt == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif fmt == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    elif fmt == ".json":
        df.to_json(path, orient="records")
    elif fmt == ".parquet":
        df.to_parquet(path, index=False)
    elif fmt == ".xlsx":
        df.to_excel(path, index=False, engine="openpyxl")
    else:
        raise AssertionError(fmt)
    return path


def frame(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: ["x"] for c in columns})


# ---------------------------------------------------------------- read_manifest


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".xlsx"])
def test_every_format_reads_the_same(tmp_path, ext):
    df = pd.DataFrame(ROWS)
    got = read_manifest(write(df, tmp_path / f"m{ext}"))
    assert list(got.columns) == ["image", "text", "label"]
    assert list(got.index) == list(range(6))
    assert got.astype(str).to_dict("records") == ROWS


def test_a_spreadsheets_semicolon_csv_reads_like_a_comma_one(tmp_path):
    """Saved by a spreadsheet in a comma-decimal locale: ``;`` between fields, ``12,5`` for
    12.5; a text's own commas stay in it. A comma CSV whose texts hold semicolons is unchanged."""
    semi = tmp_path / "semi.csv"
    semi.write_text("photo;caption;price;label\nimg/0.png;a red, round hat;12,5;x\nimg/1.png;two, blue;3;y\n")
    df = read_manifest(semi)
    assert list(df.columns) == ["photo", "caption", "price", "label"]
    assert df["caption"].tolist() == ["a red, round hat", "two, blue"] and df["price"].tolist() == [12.5, 3.0]
    comma = tmp_path / "comma.csv"
    comma.write_text('photo,caption,label\nimg/0.png,"a hat; red",x\n')
    assert read_manifest(comma)["caption"].tolist() == ["a hat; red"]


def test_a_workbook_reads_its_first_sheet_with_the_cells_typed(tmp_path):
    """An .xlsx as a spreadsheet saves it: numbers and dates typed, an empty cell missing, the
    first sheet the data (a second one, notes, is not read), formatted empty rows and columns
    left out."""
    import datetime as dt

    path = tmp_path / "houses.xlsx"
    data = pd.DataFrame({"photo": ["a.jpg", "b.jpg", "c.jpg"], "area": [120.5, None, 80.0],
                         "listed": [dt.datetime(2024, 1, 5), dt.datetime(2024, 2, 1), dt.datetime(2023, 12, 24)],
                         "label": ["x", "y", "x"]})
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        data.to_excel(xw, sheet_name="data", index=False)
        pd.DataFrame({"note": ["made by hand"]}).to_excel(xw, sheet_name="notes", index=False)
    from openpyxl import load_workbook

    wb = load_workbook(path)
    wb["data"]["F8"].number_format = "0.00"  # a formatted cell below and beside the table
    wb["data"]["F8"].value = None
    wb["data"]["G9"].value = " "  # a space typed in a cell out there
    wb.save(path)
    df = read_manifest(path)
    assert list(df.columns) == ["photo", "area", "listed", "label"] and len(df) == 3
    assert df["area"].iloc[0] == 120.5 and pd.isna(df["area"].iloc[1])
    assert pd.api.types.is_datetime64_any_dtype(df["listed"]) and df["listed"].iloc[2] == pd.Timestamp("2023-12-24")
    # the line a search prints says which sheet it read, and how to read another
    assert sheet_note(df) == ("sheet 'data', the first of 2: 'data', 'notes'; to read another, move it first "
                              "or save it as its own file")
    assert sheet_note(read_manifest(write(pd.DataFrame(ROWS), tmp_path / "one.xlsx"))) is None


def test_json_keeps_strings_that_look_like_numbers(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "0012", "label": 1, "split": "2020-01-01"}\n{"text": "7", "label": 2, "split": "x"}\n')
    df = read_manifest(path)
    assert df["text"].tolist() == ["0012", "7"]
    assert df["split"].tolist() == ["2020-01-01", "x"]
    assert df["label"].tolist() == [1, 2]


def test_header_names_are_stripped_and_a_bom_dropped(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeff image , text,label\nimg/0.png,hi,a\n".encode("utf-8"))
    assert list(read_manifest(path).columns) == ["image", "text", "label"]


def _bad_utf8(path: Path) -> str:
    raw = b"image,text,label\nimg/0.png,hello,a\nimg/1.png,caf\xe9,b\n"
    path.write_bytes(raw)
    at = raw.index(b"\xe9")
    return f"manifest {str(path)!r} is not UTF-8 text (line 3, byte {at}); save it as UTF-8"


FORMATS = "use .csv, .tsv, .jsonl, .json, .parquet or .xlsx (.csv, .tsv and .jsonl also compressed: .gz, .bz2, .xz, .zip)"
EMPTY = "is empty; write a header row (e.g. image,text,label) and one row per sample"
MISSING = "does not exist; check the path (autofusion data demo TASK OUT writes an example manifest)"

UNUSABLE = {
    "missing": (lambda p: p / "nope.csv", lambda p: f"manifest {str(p)!r} {MISSING}"),
    "folder": (lambda p: p, lambda p: f"manifest {str(p)!r} is a folder; give the CSV/JSONL/Parquet/.xlsx file in it"),
    "empty": (lambda p: _touch(p / "m.csv", b""), lambda p: f"manifest {str(p)!r} {EMPTY}"),
    "blank-lines": (lambda p: _touch(p / "m.csv", b"\n\n  \n"), lambda p: f"manifest {str(p)!r} {EMPTY}"),
    "header-only": (lambda p: _touch(p / "m.csv", b"image,text,label\n"),
                    lambda p: f"manifest {str(p)!r} has a header but no rows; add one row per sample"),
    "header-only-parquet": (lambda p: write(pd.DataFrame({"image": [], "label": []}), p / "m.parquet"),
                            lambda p: f"manifest {str(p)!r} has a header but no rows; add one row per sample"),
    "unknown-extension": (lambda p: _touch(p / "m.ods", b"x"), lambda p: f"manifest {str(p)!r}: unknown format '.ods'; {FORMATS}"),
    "old-excel": (lambda p: _touch(p / "m.xls", b"x"),
                  lambda p: f"manifest {str(p)!r}: unknown format '.xls' (the old binary Excel format: save it as .xlsx "
                            f"or .csv); {FORMATS}"),
    "no-extension": (lambda p: _touch(p / "manifest", b"x"),
                     lambda p: f"manifest {str(p)!r}: unknown format '(no extension)'; {FORMATS}"),
    "not-xlsx": (lambda p: _touch(p / "m.xlsx", b"a,b\n1,2\n"),
                 lambda p: f"manifest {str(p)!r} cannot be parsed as excel: "),
    "header-only-xlsx": (lambda p: write(pd.DataFrame({"image": [], "label": []}), p / "m.xlsx"),
                         lambda p: f"manifest {str(p)!r} has a header but no rows; add one row per sample"),
    "not-parquet": (lambda p: _touch(p / "m.parquet", b"not parquet at all"),
                    lambda p: f"manifest {str(p)!r} cannot be parsed as parquet: Could not open Parquet input source"),
    "bad-jsonl": (lambda p: _touch(p / "m.jsonl", b'{"image": "a.png", "label": 1}\n{"image": \n'),
                  lambda p: f"manifest {str(p)!r} cannot be parsed as jsonl: "),
    "duplicate-columns": (lambda p: _touch(p / "m.csv", b"image,label, label\na.png,x,y\n"),
                          lambda p: f"manifest {str(p)!r}: column names must be unique, but 'label' repeat"),
}


def _touch(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_manifest_names_the_file(tmp_path, case):
    make, message = UNUSABLE[case]
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        read_manifest(path)
    # Parser messages come from pandas/pyarrow: their start is ours and exact.
    if case in ("not-parquet", "bad-jsonl", "not-xlsx"):
        assert str(info.value).startswith(message(path))
    else:
        assert str(info.value) == message(path)


def test_non_utf8_csv_names_line_and_byte(tmp_path):
    path = tmp_path / "m.csv"
    expected = _bad_utf8(path)
    with pytest.raises(DataError) as info:
        read_manifest(path)
    assert str(info.value) == expected


# ---------------------------------------------------------------- columns


def test_parse_columns_flag():
    assert parse_columns_flag(None) == {}
    assert parse_columns_flag(" image = poster , text=plot,,") == {"image": ["poster"], "text": ["plot"]}
    # A part without "=" adds a column to the role before it (several images; tabular columns).
    assert parse_columns_flag("image=front,back,text=plot") == {"image": ["front", "back"], "text": ["plot"]}
    assert parse_columns_flag("image=front,image=back") == {"image": ["front", "back"]}


@pytest.mark.parametrize("flag, message", [
    ("image", "--columns: expected ROLE=COLUMN, got 'image'"),
    ("image=", "--columns: expected ROLE=COLUMN, got 'image='"),
    ("picture=poster", "--columns: unknown role 'picture'; known: image, text, audio, video, sensor, tabular, label, split, group"),
    ("label=a,label=b", "--columns: role 'label' is given twice ('a' and 'b')"),
    ("label=a,b", "--columns: role 'label' takes one column, but got 'a' and 'b'"),
])
def test_parse_columns_flag_errors(flag, message):
    with pytest.raises(DataError) as info:
        parse_columns_flag(flag)
    assert str(info.value) == message


def test_candidate_columns_are_case_insensitive_and_most_specific_first():
    assert candidate_columns(["Caption", "Title", "x"], "text") == ["Caption", "Title"]
    assert candidate_columns(["x"], "image") == []


@pytest.mark.parametrize("columns, expected", [
    (["image", "text", "label"], {"image": ["image"], "text": ["text"], "label": ["label"]}),
    (["img", "caption", "target"], {"image": ["img"], "text": ["caption"], "label": ["target"]}),
    (["Photo", "Review", "Class", "Split"], {"image": ["Photo"], "text": ["Review"], "label": ["Class"], "split": ["Split"]}),
    # An exact role name wins over other synonyms.
    (["picture", "image", "caption", "text", "y"], {"image": ["image"], "text": ["text"], "label": ["y"]}),
    (["image", "text", "label", "partition"], {"image": ["image"], "text": ["text"], "label": ["label"], "split": ["partition"]}),
])
def test_columns_inferred_from_names(columns, expected):
    assert resolve_columns(frame(columns), Path("m.csv"), ["image", "text"]) == expected


def test_ambiguous_columns_need_a_choice():
    df = frame(["img", "caption", "description", "label"])
    with pytest.raises(DataError) as info:
        resolve_columns(df, Path("m.csv"), ["image", "text"])
    assert str(info.value) == (
        "m.csv: several columns could be the text (caption, description); pick one with --columns text=COLUMN"
    )
    roles = resolve_columns(df, Path("m.csv"), ["image", "text"], flag={"text": ["description"]})
    assert roles == {"image": ["img"], "text": ["description"], "label": ["label"]}


def test_no_label_column():
    with pytest.raises(DataError) as info:
        resolve_columns(frame(["image", "text", "score"]), Path("m.csv"), ["image", "text"])
    assert str(info.value) == (
        "m.csv: no label column; columns are image, text, score; name one with --columns label=COLUMN"
    )


def test_flag_wins_over_space_and_names():
    df = frame(["image", "poster", "plot", "text", "label", "genre"])
    roles = resolve_columns(df, Path("m.csv"), ["image", "text"],
                            space={"image": "poster", "label": "genre"}, flag={"text": ["plot"]})
    assert roles == {"image": ["poster"], "text": ["plot"], "label": ["genre"]}


def test_a_given_column_is_never_guessed_for_another_role():
    # "text" holds the labels here; the text role must fall back to "caption".
    df = frame(["img", "caption", "text"])
    roles = resolve_columns(df, Path("m.csv"), ["image", "text"], flag={"label": ["text"]})
    assert roles == {"image": ["img"], "text": ["caption"], "label": ["text"]}


@pytest.mark.parametrize("flag, space, message", [
    ({"image": ["poster"]}, None, "m.csv: column 'poster' (--columns image) not found; columns: image, text, label"),
    (None, {"label": "genre"}, "m.csv: column 'genre' (data.columns label) not found; columns: image, text, label"),
    ({"audio": ["text"]}, None, "--columns audio=text: audio is not a modality of this space (modalities: image, text)"),
    ({"image": ["text"], "text": ["text"]}, None, "m.csv: column 'text' is given for both image and text"),
])
def test_given_column_errors(flag, space, message):  # noqa: D103
    with pytest.raises(DataError) as info:
        resolve_columns(frame(["image", "text", "label"]), Path("m.csv"), ["image", "text"], flag=flag, space=space)
    assert str(info.value) == message


# ---------------------------------------------------------------- splits


def strata(n_per_class: int, classes: int = 4) -> np.ndarray:
    return np.repeat(np.arange(classes), n_per_class)


def test_seeded_split_is_deterministic_stratified_and_honours_fractions():
    y = strata(25)
    free = np.full(len(y), -1, np.int8)
    a = assign_splits(free, y, 0.15, 0.15, seed=0)
    assert np.array_equal(a, assign_splits(free, y, 0.15, 0.15, seed=0))
    assert not np.array_equal(a, assign_splits(free, y, 0.15, 0.15, seed=1))
    counts = np.bincount(a, minlength=3)
    assert counts[TEST] == 15 and abs(counts[VAL] - 15) <= 1 and counts.sum() == 100
    for c in range(4):
        per = np.bincount(a[y == c], minlength=3)
        assert (per > 0).all(), per
        assert abs(per[TEST] - 15 / 4) <= 1 and abs(per[VAL] - 15 / 4) <= 1


def test_split_column_aliases_and_empty_cells():
    values = pd.Series(["train", "Training", " valid", "dev", "validation", "VAL", "test", "holdout", "testing", "", None])
    codes = parse_split_column(values, "m.csv")
    assert codes.tolist() == [TRAIN, TRAIN, VAL, VAL, VAL, VAL, TEST, TEST, TEST, -1, -1]
    assert codes.dtype == np.int8
    nullable = pd.Series(["train", pd.NA, "val"], dtype="string")
    assert parse_split_column(nullable, "m.csv").tolist() == [TRAIN, -1, VAL]


@pytest.mark.parametrize("value", ["trian", 1, "fold1"])
def test_bad_split_value(value):
    with pytest.raises(DataError) as info:
        parse_split_column(pd.Series(["train", "val", value], dtype=object), "m.csv")
    assert str(info.value) == (
        f"m.csv: split value {value!r} in row 3; use train, val or test "
        "(or training, valid, validation, dev, testing, holdout)"
    )


def test_complete_split_column_is_kept_as_is():
    given = np.array([TRAIN] * 6 + [VAL] * 2 + [TEST] * 2, np.int8)
    assert np.array_equal(assign_splits(given, strata(5, 2), 0.15, 0.15, seed=3), given)


def test_split_column_without_test_gets_one_carved_from_train():
    y = strata(20, 2)
    given = np.where(np.arange(40) % 5 == 0, VAL, TRAIN).astype(np.int8)
    out = assign_splits(given, y, 0.15, 0.2, seed=0)
    assert np.array_equal(out[given == VAL], given[given == VAL])  # val rows stay val
    assert (out == TEST).sum() == round(32 * 0.2)
    assert set(np.flatnonzero(out == TEST)) <= set(np.flatnonzero(given == TRAIN))
    for c in range(2):
        assert (out[y == c] == TEST).sum() > 0


def test_split_column_with_empty_cells_fills_only_those():
    y = strata(20, 2)
    given = np.full(40, -1, np.int8)
    given[:10] = TEST
    out = assign_splits(given, y, 0.15, 0.15, seed=0)
    assert (out[:10] == TEST).all()
    assert {TRAIN, VAL, TEST} <= set(out[10:].tolist())


def test_too_few_rows_to_split():
    with pytest.raises(DataError) as info:
        assign_splits(np.full(2, -1, np.int8), None, 0.15, 0.5, seed=0)
    assert str(info.value) == (
        "too few rows (1) to split off a val set (1 rows) and keep training rows; "
        "add rows, lower data.val_fraction or give a split column"
    )


def test_columns_of_a_modality_found_by_their_contents(tmp_path):
    """Columns no name gives away are recognised by what they hold: every column of image
    paths is an image input (four photos of a house), free text is text."""
    df = pd.DataFrame({
        "frontal": ["a/1.jpg", "a/2.jpg", "a/3.jpg"], "kitchen": ["k/1.png", "k/2.png", "k/3.png"],
        "notes": ["a big old house by the sea", "small flat with a view", "new build near the school"],
        "price": [1.5, 2.0, 3.25],
    })
    roles = resolve_columns(df, Path("m.csv"), ["image", "text"], flag={"label": ["price"]})
    assert roles == {"image": ["frontal", "kitchen"], "text": ["notes"], "label": ["price"]}

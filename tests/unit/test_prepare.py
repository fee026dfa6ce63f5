"""From a manifest on disk to PreparedData: every format gives the same arrays, labels of
every kind, missing modalities, every kind of bad row with its exact message, the split,
the decode-once cache, and ``data inspect`` (which reuses all of it)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from PIL import Image
from rich.console import Console

from autofusion.data.inspection import inspect_facts, inspect_manifest
from autofusion.data.prepare import DataMeta, prepare_data
from autofusion.data.splits import TEST, TRAIN, VAL
from autofusion.errors import ConfigError, DataError
from autofusion.spaces.auto import find_modalities
from autofusion.spaces.load import SPACES_DIR, load_space

CLASSES = ("a", "b", "c")
REGRESSION = {"loss": {"choices": {"mse": {}}}, "search": {"metric": "val_loss", "mode": "min"}}
N_PER_CLASS = 8


@functools.lru_cache(maxsize=None)
def builtin(task: str):
    return load_space(task)


def custom(tmp_path: Path, task: str = "image_text", top: dict | None = None, **data) -> object:
    """A copy of ``task``'s built-in space with ``data`` settings (and top-level sections) changed."""
    raw = yaml.safe_load((SPACES_DIR / f"{task}.yaml").read_text())
    raw["data"] = {**raw.get("data", {}), **data}
    raw.update(top or {})
    path = tmp_path / f"space-{len(list(tmp_path.glob('space-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_space(space=path)


def png(path: Path, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path.name


def wav(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, rng.uniform(-0.5, 0.5, 800).astype(np.float32), 8000)


def rows(root: Path, n_per_class: int = N_PER_CLASS, classes=CLASSES, audio: bool = False) -> list[dict]:
    """Rows with real image (and audio) files under ``root``; labels cycle over ``classes``."""
    out = []
    for i in range(n_per_class * len(classes)):
        png(root / "img" / f"{i}.png", i)
        row = {"image": f"img/{i}.png", "caption": f"word{i % 4} thing number {i}", "label": classes[i % len(classes)]}
        if audio:
            wav(root / "wav" / f"{i}.wav", i)
            row = {"image": row["image"], "audio": f"wav/{i}.wav", "label": row["label"]}
        out.append(row)
    return out


def write(records: list[dict], path: Path) -> Path:
    df = pd.DataFrame(records)
    {
        ".csv": lambda: df.to_csv(path, index=False),
        ".tsv": lambda: df.to_csv(path, sep="\t", index=False),
        ".jsonl": lambda: df.to_json(path, orient="records", lines=True),
        ".json": lambda: df.to_json(path, orient="records"),
        ".parquet": lambda: df.to_parquet(path, index=False),
    }[path.suffix]()
    return path.resolve()


def prep(path: Path, space=None, **kw):
    kw.setdefault("home", path.parent / "home")
    return prepare_data(path, space or builtin("image_text"), **kw)


def same(a, b) -> None:
    """Two PreparedData hold the same rows, arrays, targets and split."""
    assert a.arrays.keys() == b.arrays.keys()
    for m in a.arrays:
        assert np.array_equal(np.asarray(a.arrays[m]), np.asarray(b.arrays[m])), m
    for m in a.present:
        assert np.array_equal(a.present[m], b.present[m]), m
    assert np.array_equal(a.targets, b.targets)
    assert np.array_equal(a.split, b.split)
    assert np.array_equal(a.row_ids, b.row_ids)
    for key in ("classes", "target", "vocab", "split_counts", "class_counts", "columns", "skipped", "bad_rows"):
        assert getattr(a.meta, key) == getattr(b.meta, key), key


@pytest.fixture
def csv_data(tmp_path):
    return write(rows(tmp_path), tmp_path / "m.csv")


# ---------------------------------------------------------------- formats, paths, columns


def test_prepared_data_shapes_and_meta(csv_data):
    d = prep(csv_data)
    n = N_PER_CLASS * len(CLASSES)
    # 8 px images and 4-word captions: sizes chosen from the data (the space leaves them unset).
    assert d.arrays["image"].shape == (n, 3, 16, 16) and d.arrays["image"].dtype == np.uint8
    assert d.arrays["text"].shape == (n, 8) and d.arrays["text"].dtype == np.int32
    assert d.targets.dtype == np.int64 and d.split.dtype == np.int8
    m = d.meta
    assert (m.target, m.classes, m.rows, m.skipped, m.bad_rows) == ("classification", list(CLASSES), n, 0, [])
    assert m.columns == {"image": ["image"], "text": ["caption"], "label": ["label"]}
    assert m.split_source == "seeded" and sum(m.split_counts.values()) == n
    assert sum(m.class_counts) == m.split_counts["train"]
    assert d.row_ids.tolist() == list(range(1, n + 1))
    assert json.loads(json.dumps(m.to_json()))["classes"] == list(CLASSES)


@pytest.mark.parametrize("ext", [".tsv", ".jsonl", ".json", ".parquet"])
def test_every_format_gives_the_same_data(tmp_path, csv_data, ext):
    records = pd.read_csv(csv_data).to_dict("records")
    same(prep(csv_data), prep(write(records, tmp_path / f"m{ext}")))


def test_relative_and_absolute_paths(tmp_path, csv_data):
    records = pd.read_csv(csv_data).to_dict("records")
    (tmp_path / "elsewhere").mkdir()
    absolute = [{**r, "image": str(tmp_path / r["image"])} for r in records]
    relative = [{**r, "image": f"../{r['image']}"} for r in records]
    base = prep(csv_data)
    same(base, prep(write(absolute, tmp_path / "elsewhere" / "abs.csv"), home=tmp_path / "home"))
    same(base, prep(write(relative, tmp_path / "elsewhere" / "rel.csv"), home=tmp_path / "home"))


def test_columns_override(tmp_path):
    records = [{"poster": r["image"], "plot": r["caption"], "genre": r["label"]} for r in rows(tmp_path)]
    path = write(records, tmp_path / "m.csv")
    d = prep(path, columns={"image": "poster", "text": "plot"})
    assert d.meta.columns == {"image": ["poster"], "text": ["plot"], "label": ["genre"]}
    with pytest.raises(DataError) as info:
        prep(path, columns={"image": "photo"})
    assert str(info.value) == f"{path}: column 'photo' (--columns image) not found; columns: poster, plot, genre"


# ---------------------------------------------------------------- labels


def test_integer_classes_sort_naturally_and_match_across_formats(tmp_path):
    records = [{**r, "label": (1, 2, 10)[i % 3]} for i, r in enumerate(rows(tmp_path))]
    a = prep(write(records, tmp_path / "m.csv"))
    b = prep(write(records, tmp_path / "m.jsonl"))
    assert a.meta.classes == ["1", "2", "10"] and a.meta.target == "classification"
    assert a.targets[:3].tolist() == [0, 1, 2]
    same(a, b)


def test_multilabel_from_lists(tmp_path):
    sets = [["x"], ["x", "y"], ["z"], ["y", "z"]]
    records = [{**r, "label": sets[i % 4]} for i, r in enumerate(rows(tmp_path))]
    d = prep(write(records, tmp_path / "m.jsonl"))
    assert d.meta.target == "multilabel" and d.meta.classes == ["x", "y", "z"]
    assert d.targets.dtype == np.float32 and d.targets.shape == (len(records), 3)
    assert d.targets[:4].tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]]
    assert d.meta.class_counts == []


def test_multilabel_from_a_delimiter(tmp_path):
    sets = ["x", "x| y", "z", "z|y"]
    records = [{**r, "label": sets[i % 4]} for i, r in enumerate(rows(tmp_path))]
    d = prep(write(records, tmp_path / "m.csv"), custom(tmp_path, label_delimiter="|"))
    assert d.meta.target == "multilabel" and d.meta.classes == ["x", "y", "z"]
    assert d.targets[:4].tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]]


def test_regression_floats(tmp_path):
    records = [{**r, "label": i * 0.5} for i, r in enumerate(rows(tmp_path))]
    records[3]["label"] = float("nan")
    d = prep(write(records, tmp_path / "m.csv"), on_bad_rows="skip")
    assert d.meta.target == "regression" and d.meta.classes == ["label"]
    assert d.targets.dtype == np.float32 and d.targets.shape == (len(records) - 1, 1)
    assert d.targets[:4, 0].tolist() == [0.0, 0.5, 1.0, 2.0]
    assert d.meta.bad_rows == ["row 4 label: empty label"]


def test_regression_needs_numbers(tmp_path):
    records = [{**r, "label": str(i)} for i, r in enumerate(rows(tmp_path))]
    records[2]["label"] = "many"
    path = write(records, tmp_path / "m.csv")
    with pytest.raises(DataError) as info:
        prep(path, custom(tmp_path, target="regression", top=REGRESSION))
    assert str(info.value) == (
        f"{path}: 1 of 24 rows are bad: row 3 label: 'many' is not a finite number; fix them or pass --on-bad-rows skip"
    )


def test_too_few_training_rows_stop_with_one_line(tmp_path):
    path = write([{**r, "label": i * 0.5} for i, r in enumerate(rows(tmp_path)[:5])], tmp_path / "m.csv")
    with pytest.raises(DataError, match=r"m.csv: \d training rows after the split, of 5 usable rows; a model "
                                        r"needs at least 5: add rows or change the split column"):
        prep(path, custom(tmp_path, target="regression", top=REGRESSION))


# ---------------------------------------------------------------- missing modalities, bad rows


def test_allowed_missing_modality_is_masked_not_bad(tmp_path):
    records = rows(tmp_path)
    records[1]["caption"] = ""
    records[4]["image"] = None
    d = prep(write(records, tmp_path / "m.csv"), custom(tmp_path, allow_missing=["image", "text"]))
    assert d.meta.bad_rows == [] and d.meta.skipped == 0
    assert np.flatnonzero(~d.present["text"]).tolist() == [1]
    assert np.flatnonzero(~d.present["image"]).tolist() == [4]
    assert (d.arrays["text"][1] == 0).all() and (np.asarray(d.arrays["image"][4]) == 0).all()
    assert d.meta.allow_missing == ["image", "text"]


def test_a_row_with_no_modality_at_all_is_bad(tmp_path):
    records = rows(tmp_path)
    records[2]["caption"] = records[2]["image"] = ""
    d = prep(write(records, tmp_path / "m.csv"), custom(tmp_path, allow_missing=["image", "text"]), on_bad_rows="skip")
    assert d.meta.bad_rows == ["row 3 inputs: every modality is empty"]


def test_allow_missing_must_name_a_modality(csv_data):
    # load_space rejects this already; prepare_data checks too, for spaces built in code.
    sp = builtin("image_text")
    data = sp.file.data.model_copy(update={"allow_missing": ["audio"]})
    with pytest.raises(DataError) as info:
        prep(csv_data, dataclasses.replace(sp, file=sp.file.model_copy(update={"data": data})))
    assert str(info.value) == "data.allow_missing: 'audio' is not one of the modalities (image, text)"


BAD_ROWS = [
    "row 2 image: 'img/nope.png': file not found",
    "row 4 image: 'img/3.png': not a readable image (UnidentifiedImageError)",
    "row 5 text: empty text (allow with data.allow_missing: [text])",
    "row 7 image: empty cell (allow with data.allow_missing: [image])",
    "row 7 label: empty label",
    "row 9 label: empty label",
]


def bad_dataset(tmp_path: Path, ext: str = ".csv") -> Path:
    records = rows(tmp_path)
    records[1]["image"] = "img/nope.png"
    (tmp_path / "img" / "3.png").write_bytes(np.random.default_rng(0).bytes(200))
    records[4]["caption"] = "   "
    records[6]["image"], records[6]["label"] = "", None
    records[8]["label"] = float("nan")
    return write(records, tmp_path / f"m{ext}")


@pytest.mark.parametrize("ext", [".csv", ".jsonl"])
def test_bad_rows_are_skipped_and_counted(tmp_path, ext):
    d = prep(bad_dataset(tmp_path, ext), on_bad_rows="skip")
    assert d.meta.bad_rows == BAD_ROWS
    assert d.meta.skipped == 5 and len(d.targets) == 19
    assert sorted(set(range(1, 25)) - set(d.row_ids.tolist())) == [2, 4, 5, 7, 9]


def test_bad_rows_stop_with_the_first_three(tmp_path):
    path = bad_dataset(tmp_path)
    with pytest.raises(DataError) as info:
        prep(path)
    assert str(info.value) == f"{path}: 5 of 24 rows are bad: {'; '.join(BAD_ROWS[:3])} ...; fix them or pass --on-bad-rows skip"
    # The space's policy applies unless the flag says otherwise.
    assert prep(path, custom(tmp_path, on_bad_rows="skip")).meta.skipped == 5


def test_corrupt_and_missing_audio(tmp_path):
    records = rows(tmp_path, audio=True)
    (tmp_path / "wav" / "2.wav").write_bytes(b"RIFF" + np.random.default_rng(1).bytes(100))
    records[5]["audio"] = "wav/gone.wav"
    d = prep(write(records, tmp_path / "m.csv"), builtin("image_audio"), on_bad_rows="skip")
    assert d.meta.bad_rows == [
        "row 3 audio: 'wav/2.wav': not a readable audio file (LibsndfileError)",
        "row 6 audio: 'wav/gone.wav': file not found",
    ]
    # 0.1 s clips: 0.25 s kept (the shortest length chosen from the data) at their 8 kHz rate
    assert d.arrays["audio"].shape == (22, 2000) and d.arrays["audio"].dtype == np.float32


def _m4a(path: Path, wave: np.ndarray, rate: int) -> None:
    """An AAC clip in an MP4 container, as a phone records it (written by PyAV)."""
    import av

    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(wave.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def test_m4a_clips_are_read_through_ffmpeg(tmp_path):
    """Formats soundfile cannot read (m4a, aac) are found as audio by the column finder, and
    decoded by FFmpeg: rate and length chosen from them, a tone kept as a tone."""
    records = rows(tmp_path, audio=True)
    t = np.arange(8000) / 8000
    for i, r in enumerate(records):
        r["audio"] = f"wav/{i}.m4a"
        _m4a(tmp_path / r["audio"], 0.3 * np.sin(2 * np.pi * (300 + 200 * (i % 2)) * t), 8000)
    path = write(records, tmp_path / "m.csv")
    assert find_modalities(path).roles["audio"] == ["audio"]
    d = prep(path, builtin("image_audio"))
    seconds = d.meta.prep["audio"]["seconds"]  # 1 s, and AAC's padding frames: up to 1.25
    assert d.meta.prep["audio"]["sample_rate"] == 8000 and seconds in (1.0, 1.25)
    x = np.asarray(d.arrays["audio"])
    assert x.shape == (24, int(8000 * seconds)) and 0.25 < np.abs(x).max() < 0.35
    assert 0.15 < np.abs(x[:, 2000:6000]).mean() < 0.23  # |0.3 sin| averages 0.19


def test_a_long_m4a_is_measured_from_its_header_and_decoded_only_as_far_as_kept(tmp_path):
    """Choosing a length reads the container's duration, and a decode keeps the clip's start:
    a long recording is not decoded whole for the seconds a model keeps."""
    from autofusion.modalities.audio import decode_audio, ffmpeg_length, read_ffmpeg

    path = tmp_path / "talk.m4a"
    t = np.arange(8000 * 20) / 8000
    _m4a(path, 0.3 * np.sin(2 * np.pi * 440 * t), 8000)
    rate, seconds = ffmpeg_length(path)
    assert rate == 8000 and 20.0 <= seconds < 20.3
    whole, _ = read_ffmpeg(path)
    start, _ = read_ffmpeg(path, seconds=1.0)
    assert len(whole) >= 8000 * 20 and 8000 <= len(start) < 8000 * 1.5
    np.testing.assert_array_equal(start[:, 0], whole[: len(start), 0])
    x = decode_audio(path, 8000, 8000)
    assert x.shape == (8000,) and 0.25 < np.abs(x[2000:]).max() < 0.35


def test_the_data_line_says_how_each_column_was_read(tmp_path):
    """The line a search prints before its trials: rows and split, the label and its kind, each
    modality's columns, and the columns nothing reads."""
    records = [{**r, "row_id": f"r{i}"} for i, r in enumerate(rows(tmp_path))]
    d = prep(write(records, tmp_path / "m.csv"))
    line = d.meta.read_as
    assert line.startswith("m.csv: 24 rows (train ") and "seeded split" in line
    assert "label label (classification, 3 classes); image image; text caption" in line
    assert line.endswith("; not used: row_id. Change with --columns ROLE=COL,... (or --target)")
    assert DataMeta.from_json(json.loads(json.dumps(d.meta.to_json()))).read_as == line


def test_single_class_is_unusable(tmp_path):
    path = write(rows(tmp_path, classes=("only",)), tmp_path / "m.csv")
    with pytest.raises(DataError) as info:
        prep(path, on_bad_rows="skip")
    assert str(info.value) == (
        f"{path}: label column 'label' has a single class ('only'); classification needs at least 2: "
        "add samples of other classes, or point --columns label=COLUMN at the right column"
    )


def test_classes_too_small_to_split(tmp_path):
    records = rows(tmp_path)
    records[0]["label"] = records[3]["label"] = "rare"
    path = write(records, tmp_path / "m.csv")
    with pytest.raises(DataError) as info:
        prep(path)
    assert str(info.value) == (
        f"{path}: classes with too few rows to split into train/val/test: 'rare' (2 rows); "
        "each needs at least 3, or give a split column, or --on-bad-rows skip"
    )
    d = prep(path, on_bad_rows="skip")
    assert d.meta.classes == list(CLASSES) and d.meta.skipped == 2
    assert d.meta.bad_rows == ["dropped classes with under 3 rows: 'rare' (2 rows)"]


def test_all_rows_bad(tmp_path):
    records = [{**r, "caption": ""} for r in rows(tmp_path, n_per_class=1)]
    path = write(records, tmp_path / "m.csv")
    with pytest.raises(DataError) as info:
        prep(path, on_bad_rows="skip")
    assert str(info.value) == (
        f"{path}: no usable rows: all 3 rows are bad, e.g. row 1 text: empty text (allow with data.allow_missing: [text])"
    )


def test_unusable_manifests_through_prepare(tmp_path):
    path = write([{k: v for k, v in r.items() if k != "label"} for r in rows(tmp_path, 1)], tmp_path / "m.csv")
    with pytest.raises(DataError) as info:
        prep(path)
    assert str(info.value) == f"{path}: no label column; columns are image, caption; name one with --columns label=COLUMN"
    with pytest.raises(DataError) as info:
        prep(tmp_path / "missing.csv")
    assert str(info.value) == (
        f"manifest {str(tmp_path / 'missing.csv')!r} does not exist; check the path "
        "(autofusion data demo TASK OUT writes an example manifest)"
    )


def test_unknown_bad_row_policy(csv_data):
    with pytest.raises(ConfigError) as info:
        prep(csv_data, on_bad_rows="ignore")
    assert str(info.value) == "on_bad_rows must be 'error' or 'skip', but got 'ignore'"


# ---------------------------------------------------------------- split


def test_seeded_split_is_stratified_and_depends_on_the_seed(tmp_path):
    records = rows(tmp_path, n_per_class=10)
    path = write(records, tmp_path / "m.csv")
    a, b, c = prep(path, seed=0), prep(path, seed=0), prep(path, seed=1)
    assert np.array_equal(a.split, b.split) and not np.array_equal(a.split, c.split)
    assert a.meta.split_counts == {"train": 21, "val": 5, "test": 4}  # round(30 * 0.15) == 4
    for k in range(3):
        assert set(a.split[a.targets == k].tolist()) == {TRAIN, VAL, TEST}
    # The vocabulary comes from the training rows only.
    train_words = {w for r, s in zip(records, a.split) if s == TRAIN for w in r["caption"].split()}
    assert set(a.meta.vocab["tokens"][2:]) == train_words


@pytest.mark.parametrize("names", [("train", "val", "test"), ("training", "valid", "holdout"), ("Train", "dev", "Test")])
def test_split_column_is_honoured(tmp_path, names):
    records = rows(tmp_path)
    codes = [TRAIN, TRAIN, VAL, TEST] * 6
    for r, c in zip(records, codes):
        r["split"] = names[c]
    d = prep(write(records, tmp_path / "m.csv"))
    assert d.split.tolist() == codes and d.meta.split_source == "column"


def test_split_column_without_test_gets_one(tmp_path):
    records = rows(tmp_path)
    for i, r in enumerate(records):
        r["split"] = "val" if i % 4 == 0 else "train"
    d = prep(write(records, tmp_path / "m.csv"))
    assert d.meta.split_source == "column+seeded"
    assert (d.split[::4] == VAL).all() and d.meta.split_counts["test"] == 3


def test_bad_split_value(tmp_path):
    records = rows(tmp_path)
    for r in records:
        r["split"] = "train"
    records[5]["split"] = "tst"
    path = write(records, tmp_path / "m.csv")
    with pytest.raises(DataError) as info:
        prep(path)
    assert str(info.value) == (
        f"{path}: split value 'tst' in row 6; use train, val or test (or training, valid, validation, dev, testing, holdout)"
    )


# ---------------------------------------------------------------- decode once


def cache_dirs(home: Path) -> list[Path]:
    return sorted(p for p in (home / "cache").iterdir() if not p.name.startswith("."))


def test_second_prepare_is_a_cache_hit(csv_data):
    a, b = prep(csv_data), prep(csv_data)
    assert (a.meta.cache_hit, b.meta.cache_hit) == (False, True)
    same(a, b)
    assert a.meta.fingerprint == b.meta.fingerprint


def test_a_changed_file_invalidates_the_cache(tmp_path, csv_data):
    a = prep(csv_data)
    image = tmp_path / "img" / "0.png"
    png(image, 999)
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    b = prep(csv_data)
    assert not b.meta.cache_hit and a.meta.fingerprint != b.meta.fingerprint
    assert not np.array_equal(a.arrays["image"][0], b.arrays["image"][0])
    assert np.array_equal(a.arrays["image"][1:], b.arrays["image"][1:])
    assert len(cache_dirs(tmp_path / "home")) == 2


def test_a_half_written_cache_is_rebuilt(tmp_path, csv_data):
    a = prep(csv_data)
    (folder,) = cache_dirs(tmp_path / "home")
    (folder / "status.json").unlink()
    b = prep(csv_data)
    assert not b.meta.cache_hit and (folder / "status.json").is_file()
    same(a, b)
    assert prep(csv_data).meta.cache_hit


def test_bad_rows_survive_the_cache(tmp_path):
    path = bad_dataset(tmp_path)
    a, b = prep(path, on_bad_rows="skip"), prep(path, on_bad_rows="skip")
    assert b.meta.cache_hit and b.meta.bad_rows == a.meta.bad_rows == BAD_ROWS


def test_video_decodes(tmp_path):
    from autofusion.data.demo import write_demo

    manifest = write_demo("audio_video", tmp_path / "demo", num_samples=16)
    d = prepare_data(manifest, builtin("audio_video"), home=tmp_path / "home")
    assert d.arrays["video"].shape == (16, 8, 3, 32, 32) and d.arrays["video"].dtype == np.uint8
    assert d.arrays["audio"].shape == (16, 4000)
    assert np.asarray(d.arrays["video"]).std() > 0


# ---------------------------------------------------------------- inspect


def test_inspect_facts(tmp_path):
    path = bad_dataset(tmp_path)
    f = inspect_facts(path, task="image_text", seed=0, home=tmp_path / "home")
    assert f["task"] == "image_text" and f["format"] == "csv" and f["rows"] == 24
    assert f["roles"] == {"image": "image", "text": "caption", "label": "label"}
    assert any(c.startswith("image.size=16") for c in f["chosen"])
    assert f["target"] == "classification"
    assert f["bad_rows"] == {"count": 5, "problems": 6, "first": BAD_ROWS}
    assert (f["skipped"], f["kept"]) == (5, 19)
    assert f["modality_presence"]["image"] == {"column": "image", "modality": "image", "present": 23, "missing": 1,
                                               "missing_allowed": False, "unreadable": 2}
    assert f["modality_presence"]["text"]["missing"] == 1
    assert f["modality_combinations"] == {"image+text": 22, "image": 1, "text": 1}
    assert sum(c["total"] for c in f["classes"].values()) == 19
    assert all(c["total"] == c["train"] + c["val"] + c["test"] for c in f["classes"].values())
    d = prep(path, on_bad_rows="skip", seed=0)
    assert {k: f["split"][k] for k in ("train", "val", "test")} == d.meta.split_counts
    assert f["split"]["source"] == "seeded" and f["split"]["seed"] == 0
    assert d.meta.cache_hit  # inspect filled the same cache a search uses
    json.dumps(f)


def test_inspect_prints_bad_rows_and_split(tmp_path):
    path = bad_dataset(tmp_path)
    console = Console(record=True, width=160)
    inspect_manifest(path, task="image_text", space=None, columns="text=caption", seed=0, console=console,
                     home=tmp_path / "home")
    text = console.export_text()
    f = inspect_facts(path, task="image_text", home=tmp_path / "home")
    assert "Bad rows: 5 of 24" in text
    for line in BAD_ROWS:
        assert line in text
    assert "5 of 24 rows would be skipped, 19 kept" in text
    assert "Split: seeded (seed 0, val 0.15, test 0.15)" in text
    s = f["split"]
    assert any(line.split() == ["│", str(s["train"]), "│", str(s["val"]), "│", str(s["test"]), "│"]
               for line in text.splitlines())


def test_inspect_with_a_split_column_and_regression(tmp_path):
    records = [{**r, "label": i * 0.25, "subset": "test" if i % 5 == 0 else "train"} for i, r in enumerate(rows(tmp_path))]
    f = inspect_facts(write(records, tmp_path / "m.jsonl"), home=tmp_path / "home")
    assert f["target"] == "regression" and f["classes"] == {}
    assert f["target_stats"]["max"] == pytest.approx(23 * 0.25)
    assert f["split"]["source"] == "column+seeded" and f["split"]["column"] == "subset"
    assert f["split"]["test"] == 5 and f["split"]["val"] > 0


def test_inspect_without_a_task_reads_the_manifest_as_search_data_does(tmp_path):
    """No --task: the space a search with --data alone assembles from the columns."""
    from autofusion.spaces.auto import write_auto_space

    records = rows(tmp_path, audio=True)
    path = write(records, tmp_path / "m.csv")
    f = inspect_facts(path, home=tmp_path / "home")
    assert (f["task"], f["modalities"]) == ("m", ["image", "audio"])
    assert f["space"] == str(write_auto_space(path, home=tmp_path / "home").path)
    both = write([{**r, "text": f"hello there number {i}"} for i, r in enumerate(records)], tmp_path / "both.csv")
    assert inspect_facts(both, home=tmp_path / "home")["modalities"] == ["image", "text", "audio"]
    assert inspect_facts(both, task="text_audio", home=tmp_path / "home")["modalities"] == ["text", "audio"]


def test_inspect_still_raises_for_unusable_manifests(tmp_path):
    path = write([{"image": r["image"], "caption": r["caption"]} for r in rows(tmp_path, 1)], tmp_path / "m.csv")
    with pytest.raises(DataError) as info:
        inspect_facts(path, task="image_text", home=tmp_path / "home")
    assert str(info.value) == f"{path}: no label column; columns are image, caption; name one with --columns label=COLUMN"
    path = write([{"label": "a"}, {"label": "b"}], tmp_path / "x.csv")
    with pytest.raises(DataError) as info:
        inspect_facts(path, home=tmp_path / "home")
    assert str(info.value).startswith(f"{path.resolve()}: no column of any modality")


@pytest.mark.parametrize("decode", ["decode_image", "decode_small", "decode_crop"])
def test_a_phones_sideways_photo_is_decoded_upright(decode):
    """A JPEG stored sideways with EXIF orientation 6 (a phone held upright) is decoded as it is
    shown, by every image decoder: the modality's, the pixel statistics' and the pretrained one's."""
    import io

    from PIL import Image

    from autofusion.modalities.image import decode_image
    from autofusion.models.encoders._pretrained import decode_crop
    from autofusion.models.encoders.image import decode_small

    fn = {"decode_image": decode_image, "decode_small": decode_small, "decode_crop": decode_crop}[decode]
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :32] = 255  # stored: white on the left; shown (turned 90 degrees clockwise): white on top
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    turned, plain = io.BytesIO(), io.BytesIO()
    Image.fromarray(stored).save(turned, "JPEG", exif=exif, quality=95)
    Image.fromarray(stored).save(plain, "JPEG", quality=95)
    shown, as_stored = fn(turned.getvalue(), 16)[0].astype(float), fn(plain.getvalue(), 16)[0].astype(float)
    assert shown[:4].mean() > 200 and shown[-4:].mean() < 50  # white on top, dark at the bottom
    assert abs(as_stored[:4].mean() - as_stored[-4:].mean()) < 20  # no tag: as stored, left and right

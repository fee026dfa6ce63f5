"""Rows that share a file hold it once (``data/arrays.py``), cache entries are written in
chunks and resume after an interruption (``data/cache.py``), and the arrays reach Ray's
trials without a copy per trial: pickled out of band (the object store's zero-copy path), or
as the path of their memory-mapped cache file when they are large."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from autofusion.data import cache
from autofusion.data.arrays import IndexedRows, distinct_cells, per_distinct
from autofusion.data.cache import Part, build_entry, decoded_columns
from autofusion.errors import DataError
from autofusion.modalities import MODALITIES
from autofusion.models.encoders._embed import (
    EMBED_BATCH,
    MAX_EMBED_BATCH,
    batch_for_memory,
)


def _mapped(tmp_path, rows: int = 6) -> np.memmap:
    np.save(tmp_path / "values.npy", np.arange(rows * 4, dtype=np.float32).reshape(rows, 2, 2))
    return np.load(tmp_path / "values.npy", mmap_mode="r")


def test_indexed_rows_read_like_the_array_they_stand_for(tmp_path):
    dense = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    index = np.array([5, 0, 0, 3, 5, 5, 1])
    for values in (dense, _mapped(tmp_path)):
        a = IndexedRows(values, index)
        full = dense[index]
        assert a.shape == full.shape and len(a) == 7 and a.dtype == np.float32 and a.distinct == 6
        np.testing.assert_array_equal(np.asarray(a), full)
        np.testing.assert_array_equal(a[np.array([4, 0, 1])], full[[4, 0, 1]])
        np.testing.assert_array_equal(a[3], full[3])
        np.testing.assert_array_equal(a[:, 1], full[:, 1])
        kept = a.take(np.array([1, 2, 6]))
        assert kept.values is values  # a view: the entries are not copied
        np.testing.assert_array_equal(np.asarray(kept), full[[1, 2, 6]])


def test_distinct_cells_keep_the_first_appearance_order_and_one_empty_entry():
    codes, uniques = distinct_cells(pd.Series(["b.png", None, "a.png", "b.png", None], dtype=object))
    assert uniques == ["b.png", None, "a.png"] and codes.tolist() == [0, 1, 2, 0, 1]
    calls = []
    out = per_distinct(pd.Series(["x", "y", "x", "x"]), lambda c: calls.append(list(c)) or {"n": np.array([len(s) for s in c])})
    assert calls == [["x", "y"]] and np.asarray(out["n"]).tolist() == [1, 1, 1, 1]


def test_an_error_naming_a_distinct_cell_names_its_first_row():
    def fail(cells):
        raise ValueError("row 2: not a readable image")

    with pytest.raises(ValueError, match=r"^row 3: not a readable image$"):
        per_distinct(pd.Series(["ok.png", "ok.png", "bad.png", "bad.png"]), fail)


def _pickled(obj) -> tuple[bytes, list]:
    """What Ray's serializer does: pickle protocol 5, large buffers out of band."""
    buffers: list = []
    return pickle.dumps(obj, protocol=5, buffer_callback=buffers.append), buffers


def test_a_small_memmap_travels_out_of_band_and_a_large_one_as_its_path(tmp_path, monkeypatch):
    values = _mapped(tmp_path, rows=1000)
    a = IndexedRows(values, np.arange(1000) % 7)
    monkeypatch.delenv("AUTOFUSION_MMAP_SHARE", raising=False)  # 0.1 of this machine's memory: far above 16 kB
    stream, buffers = _pickled(a)
    assert values.nbytes in [b.raw().nbytes for b in buffers] and len(stream) < 2000  # not copied into the stream
    monkeypatch.setenv("AUTOFUSION_MMAP_SHARE", "0")  # every cache file stays on disk
    stream, buffers = _pickled(a)
    assert all(b.raw().nbytes < values.nbytes for b in buffers) and len(stream) < 2000
    back = pickle.loads(stream, buffers=buffers)
    assert isinstance(back.values, np.memmap) and str(back.values.filename) == str(values.filename)
    assert not back.values.flags.writeable
    np.testing.assert_array_equal(np.asarray(back), np.asarray(a))
    (tmp_path / "values.npy").rename(tmp_path / "gone.npy")  # a node that does not see the file
    with pytest.raises(DataError, match=r"cannot read the cache file .*values\.npy on this node.*AUTOFUSION_HOME"):
        pickle.loads(stream, buffers=buffers)


def test_a_trial_reads_the_entries_without_a_copy_of_its_own(tmp_path, monkeypatch, ray_local):
    """Through Ray's object store: a read-only view of shared memory (not a copy in the trial's
    heap), or the same file mapped again."""
    ray = ray_local
    values = _mapped(tmp_path, rows=4096)  # 64 kB: above Ray's inline limit, so it goes to the object store

    @ray.remote(num_cpus=0)
    def look(a: IndexedRows) -> tuple[str, bool, str | None, float]:
        return type(a.values).__name__, bool(a.values.flags.writeable), str(getattr(a.values, "filename", None)), \
            float(np.asarray(a[np.arange(3)]).sum())

    expect = float(np.asarray(values[[0, 1, 2]]).sum())
    monkeypatch.delenv("AUTOFUSION_MMAP_SHARE", raising=False)
    kind, writeable, _, total = ray.get(look.remote(ray.put(IndexedRows(values, np.arange(4096)))))
    assert (kind, writeable, total) == ("ndarray", False, expect)  # zero-copy from the object store
    monkeypatch.setenv("AUTOFUSION_MMAP_SHARE", "0")
    kind, writeable, filename, total = ray.get(look.remote(ray.put(IndexedRows(values, np.arange(4096)))))
    assert (kind, writeable, filename, total) == ("memmap", False, str(values.filename), expect)


def test_an_interrupted_entry_resumes_where_it_stopped(tmp_path):
    folder = tmp_path / "cache" / "key"
    calls: list[tuple[int, int]] = []

    def produce(start: int, end: int, stop_at: int | None = None):
        if start == stop_at:
            raise KeyboardInterrupt
        calls.append((start, end))
        return {"x": np.arange(start, end, dtype=np.int32)[:, None].repeat(2, 1)}, [[start, f"chunk {start}"]]

    with pytest.raises(KeyboardInterrupt):
        build_entry(folder, {"p": Part(10, lambda s, e: produce(s, e, stop_at=6), 3)})
    assert calls == [(0, 3), (3, 6)] and not folder.exists()
    calls.clear()
    seen = []
    arrays, info, built = build_entry(folder, {"p": Part(10, produce, 3)}, progress=seen.append)
    assert built and calls == [(6, 9), (9, 10)]  # the first two chunks were not made again
    assert seen == [6, 3, 1]  # the resumed rows, then each chunk
    np.testing.assert_array_equal(arrays["x"][:, 0], np.arange(10))
    assert [n[1] for n in info["notes"]["p"]] == ["chunk 0", "chunk 3", "chunk 6", "chunk 9"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["key"]  # no partial folder, no lock left
    calls.clear()
    again, _, built = build_entry(folder, {"p": Part(10, produce, 3)})
    assert not built and not calls and isinstance(again["x"], np.memmap)


def test_a_gpu_batch_fills_half_the_free_memory_within_bounds():
    assert batch_for_memory(80e9, 10e6) == 512 == MAX_EMBED_BATCH  # roomy: the cap
    assert batch_for_memory(8e9, 40e6) == 96  # 0.5 * 8 GB / 40 MB = 100 rows, down to a multiple of 32
    assert batch_for_memory(1e9, 400e6) == EMBED_BATCH  # tight: never under the CPU's batch


def test_a_decode_interrupted_halfway_resumes_and_names_every_row_of_a_bad_file(tmp_path, monkeypatch):
    from PIL import Image

    files = [tmp_path / f"{i}.png" for i in range(12)]
    for i, f in enumerate(files):
        Image.new("RGB", (10, 10), (i * 20, 0, 0)).save(f)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    sources = [str(f) for f in files for _ in range(3)] + [str(tmp_path / "bad.png")] * 2 + [None]  # 39 rows
    image = MODALITIES.get("image")
    decode = type(image).decode
    calls: list[str] = []

    def counted(mod, source, prep):
        if len(calls) == 7:
            raise KeyboardInterrupt
        calls.append(source)
        return decode(mod, source, prep)

    monkeypatch.setattr(cache, "chunk_rows", lambda shape, dtype: 4)  # 14 distinct entries: 4 chunks
    monkeypatch.setattr(type(image), "decode", counted)
    monkeypatch.setattr(cache, "ThreadPoolExecutor", lambda n: ThreadPoolExecutor(1))  # decodes in order
    columns = {"image": (image, {"size": 8}, sources, "image", [f"cell{i}" for i in range(len(sources))])}
    with pytest.raises(KeyboardInterrupt):
        decoded_columns(tmp_path / "cache" / "key", columns)
    assert len(calls) == 7  # one chunk of 4 written, the second cut off
    calls.clear()
    monkeypatch.setattr(type(image), "decode", lambda mod, source, prep: calls.append(source) or decode(mod, source, prep))
    arrays, bad, hit = decoded_columns(tmp_path / "cache" / "key", columns)
    assert not hit and len(calls) == 14 - 1 - 4  # the rest: one empty cell is no file, 4 were decoded before
    assert [b.row for b in bad] == [37, 38] and bad[0].reason.startswith("'cell36': ")
    a = arrays["image"]
    assert a.shape == (39, 3, 8, 8) and a.distinct == 14
    np.testing.assert_array_equal(a[3], decode(image, str(files[1]), {"size": 8}))
    assert not a[36].any() and not a[38].any()  # a bad file and an empty cell: zeros


def test_text_batches_go_longest_first_each_cut_to_its_longest():
    """A text model's inputs run longest first, each batch, as the text encoder runs it, no
    wider than its longest text, and every row exactly once; other inputs (pixels) in their
    order, whole."""
    import torch

    from autofusion.models.encoders._embed import batches
    from autofusion.models.encoders.text import trimmed

    lengths = np.array([3, 9, 1, 9, 5, 2, 7])
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int8)
    ids = np.where(mask == 1, 5, 0).astype(np.int32)
    got = list(batches({"input_ids": ids, "attention_mask": mask}, len(lengths), 3))
    assert [list(lengths[sel]) for sel, _ in got] == [[9, 9, 7], [5, 3, 2], [1]]
    run = [trimmed({k: torch.from_numpy(v) for k, v in part.items()}) for _, part in got]
    assert [i.shape[1] for i, _ in run] == [9, 5, 1]
    assert sorted(np.concatenate([sel for sel, _ in got])) == list(range(len(lengths)))
    for (sel, _), (_, m) in zip(got, run):
        np.testing.assert_array_equal(m.numpy(), mask[sel, : m.shape[1]])
    pixels = np.zeros((5, 3, 4, 4), np.uint8)
    assert [(list(sel), x.shape) for sel, x in batches(pixels, 5, 2)] == \
        [([0, 1], (2, 3, 4, 4)), ([2, 3], (2, 3, 4, 4)), ([4], (1, 3, 4, 4))]

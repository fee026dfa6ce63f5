"""JSON manifests as APIs and exports write them (and Parquet files with struct and list
columns): nested objects become columns named by their path (``meta.price``), and a list of
words (tags) is text, not sensor readings that every row then fails to be."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from autofusion.data.inspection import inspect_facts
from autofusion.data.reading import read_manifest
from autofusion.modalities import MODALITIES
from autofusion.modalities.text import as_text


def _write(path, n: int = 60):
    rng = np.random.default_rng(0)
    rows = [{"text": f"item {i} is {'good' if i % 2 else 'bad'}", "label": ["neg", "pos"][i % 2],
             "meta": {"price": float(rng.uniform(1, 100)), "shop": {"city": ["rome", "oslo"][i % 2]}},
             "tags": [str(t) for t in rng.choice(["red", "blue", "green"], 2)]} for i in range(n)]
    if path.suffix == ".parquet":  # struct and list columns
        pd.DataFrame(rows).to_parquet(path)
        return path
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("ext", [".jsonl", ".parquet"])
def test_nested_objects_are_columns_and_tags_are_text(tmp_path, ext):
    path = _write(tmp_path / f"m{ext}")
    df = read_manifest(path)
    assert list(df.columns) == ["text", "label", "meta.price", "meta.shop.city", "tags"]
    assert len(df["tags"][0]) == 2 and df["meta.shop.city"][1] == "oslo"
    facts = inspect_facts(path, home=tmp_path / "home")
    assert facts["roles"] == {"text": "text,tags", "tabular": "meta.price,meta.shop.city", "label": "label"}
    assert facts["kept"] == 60


def test_lists_of_words_are_text_and_lists_of_numbers_are_readings():
    tags = [["red", "blue"], ["green"], ["red"]] * 10
    assert MODALITIES.get("text").recognises(tags) and not MODALITIES.get("sensor").recognises(tags)
    assert as_text(["red", "blue"]) == "red, blue"
    readings = [[0.1, 0.2, 0.3], [1, 2, 3]] * 10
    assert MODALITIES.get("sensor").recognises(readings) and not MODALITIES.get("text").recognises(readings)

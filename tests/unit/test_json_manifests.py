"""JSON manifests as APIs and exports write them: nested objects become columns named by their
path (``meta.price``), and a list of words (tags) is text, not sensor readings that every row
then fails to be."""

from __future__ import annotations

import json

import numpy as np

from autofusion.data.inspection import inspect_facts
from autofusion.data.reading import read_manifest
from autofusion.modalities import MODALITIES
from autofusion.modalities.text import as_text


def _write(path, n: int = 60):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for i in range(n):
            y = i % 2
            f.write(json.dumps({"text": f"item {i} is {'good' if y else 'bad'}", "label": ["neg", "pos"][y],
                                "meta": {"price": float(rng.uniform(1, 100)), "shop": {"city": ["rome", "oslo"][i % 2]}},
                                "tags": [str(t) for t in rng.choice(["red", "blue", "green"], 2)]}) + "\n")
    return path


def test_nested_objects_are_columns_and_tags_are_text(tmp_path):
    path = _write(tmp_path / "m.jsonl")
    df = read_manifest(path)
    assert list(df.columns) == ["text", "label", "meta.price", "meta.shop.city", "tags"]
    assert isinstance(df["tags"][0], list) and df["meta.shop.city"][1] == "oslo"
    facts = inspect_facts(path, home=tmp_path / "home")
    assert facts["roles"] == {"text": "text,tags", "tabular": "meta.price,meta.shop.city", "label": "label"}
    assert facts["kept"] == 60


def test_lists_of_words_are_text_and_lists_of_numbers_are_readings():
    tags = [["red", "blue"], ["green"], ["red"]] * 10
    assert MODALITIES.get("text").recognises(tags) and not MODALITIES.get("sensor").recognises(tags)
    assert as_text(["red", "blue"]) == "red, blue"
    readings = [[0.1, 0.2, 0.3], [1, 2, 3]] * 10
    assert MODALITIES.get("sensor").recognises(readings) and not MODALITIES.get("text").recognises(readings)

"""Spaces without writing one: a manifest's modalities found and a space assembled from each
modality's built-in choices (``autofusion spaces show --data``, ``autofusion search --data``
alone); a file that ``extends`` a built-in space; every schema problem listed at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from autofusion.cli import cli
from autofusion.errors import ConfigError, DataError
from autofusion.spaces.auto import (
    AUTO_DIR,
    assemble,
    auto_space_text,
    data_name,
    find_modalities,
    header,
    write_auto_space,
)
from autofusion.spaces.load import SPACES_DIR, builtin_tasks, load_space, merge_space


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)


def _products(root: Path, n: int = 40) -> Path:
    """Image + text + tabular fields and a price: no search to run without writing a space, before."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        _png(root / "img" / f"{i}.png")
        rows.append({"sku": f"S{i:04d}", "photo": f"img/{i}.png", "description": f"a fine product number {i} for you",
                     "brand": ["acme", "zeta", "omni"][i % 3], "weight": float(rng.uniform(1, 5)),
                     "price": round(float(rng.uniform(10, 100)), 2)})
    path = root / "products.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_modalities_found_in_an_image_text_price_manifest(tmp_path):
    found = find_modalities(_products(tmp_path), {"label": ["price"]})
    assert found.modalities == ["image", "text", "tabular"]
    assert found.roles == {"image": ["photo"], "text": ["description"], "tabular": ["brand", "weight"],
                           "label": ["price"]}  # sku is an id: never a feature
    assert (found.target, found.inputs, found.kinds) == ("regression", 3, {"brand": "categorical", "weight": "numeric"})


def test_the_header_names_a_code_column_as_the_trials_read_it(tmp_path):
    """Whole numbers in a column named like a code are categories in the trials
    (tabular.is_code), so the assembled space's header says so too."""
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"Clothing ID": [i % 30 for i in range(90)], "Age": [20 + i % 50 for i in range(90)],
                  "Review": [f"a soft dress that fits well {i}" for i in range(90)],
                  "label": [i % 2 for i in range(90)]}).to_csv(path, index=False)
    found = find_modalities(path)
    assert found.kinds == {"Clothing ID": "categorical", "Age": "numeric"}
    assert "tabular categorical (inferred): Clothing ID" in header(found)


def test_the_assembled_space_is_each_modalitys_part_over_the_shared_one(tmp_path):
    text, found = auto_space_text(_products(tmp_path), {"label": ["price"]})
    raw = yaml.safe_load(text)
    assert raw["task"] == "products" and list(raw["modalities"]) == ["image", "text", "tabular"]
    for m in ("image", "text", "tabular"):
        part = yaml.safe_load((AUTO_DIR / f"{m}.yaml").read_text())
        assert raw["encoders"][m] == part["encoders"][m]
    assert raw["loss"]["choices"].keys() == {"mse", "huber"} and raw["search"]["metric"] == "val_rmse"
    assert raw["data"]["columns"]["label"] == "price"
    assert "tabular categorical (inferred): brand" in text  # what was inferred, in the header
    path = tmp_path / "edited.yaml"
    path.write_text(text)
    assert load_space(space=path).modalities == ["image", "text", "tabular"]  # the printed file loads as is


def test_one_part_per_modality_and_target_kind():
    from autofusion.modalities import MODALITIES

    parts = {p.stem for p in AUTO_DIR.glob("*.yaml")}
    assert set(MODALITIES.names()) | {"common", "classification", "regression", "multilabel"} == parts
    assert not any(t.startswith("auto") for t in builtin_tasks())


def test_fusion_operators_that_cannot_work_on_the_inputs_are_left_out(tmp_path):
    found = find_modalities(_products(tmp_path), {"label": ["price"]})
    many = assemble(found.__class__(**{**found.__dict__, "inputs": 5}), "x")["fusion"]["choices"]
    one = assemble(found.__class__(**{**found.__dict__, "inputs": 1}), "x")["fusion"]["choices"]
    assert "tensor" not in many and "attention" in many
    assert "attention" not in one and "film" not in one and "mid" in one


@pytest.mark.parametrize("path, name", [("houses/manifest.csv", "houses"), ("x/My Products.csv", "my_products"),
                                        ("data/train.jsonl", "data")])
def test_data_name(path, name):
    assert data_name(path) == name


def test_nothing_to_search(tmp_path):
    path = tmp_path / "m.csv"
    pd.DataFrame({"id": [1, 2, 3], "label": ["a", "b", "a"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="no column of any modality"):
        find_modalities(path)


def test_write_auto_space_is_a_space_file_under_home(tmp_path):
    space = write_auto_space(_products(tmp_path), {"label": ["price"]}, name="shop", home=tmp_path / "home")
    assert space.task == "shop" and space.path.parent == tmp_path / "home" / "spaces"
    assert space.raw_text().startswith("# A search space assembled from the data")


def test_spaces_show_data(tmp_path):
    path = _products(tmp_path)
    result = CliRunner().invoke(cli, ["spaces", "show", "--data", str(path), "--columns", "label=price"])
    assert result.exit_code == 0, result.output
    assert "task: products" in result.output and "tabular:" in result.output
    result = CliRunner().invoke(cli, ["spaces", "show", "--data", str(path)])
    assert result.exit_code == 2 and "no label column" in result.output and "--columns label=COLUMN" in result.output
    assert CliRunner().invoke(cli, ["spaces", "show"]).exit_code == 2


def test_search_name_needs_data_alone():
    result = CliRunner().invoke(cli, ["search", "--task", "image_text", "--name", "x"])
    assert result.exit_code == 2 and "--name names the space assembled from --data alone" in result.output


# ---------------------------------------------------------------- extends, and every problem listed


def _write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_extends_changes_only_what_it_names(tmp_path):
    path = _write(tmp_path, """\
extends: image_text
task: posters
fusion:
  choices:
    film: null                       # removed
    attention: {heads: 2}            # one parameter changed, the others kept
    tensor: {dim: 8}                 # added
optimizer:
  lr: {type: float, low: 1.0e-4, high: 1.0e-2}   # a distribution with its type: replaced whole
""")
    space = load_space(space=path)
    base = load_space("image_text")
    fusion = space.file.fusion.choices
    assert space.task == "posters" and "film" not in fusion and "tensor" in fusion
    assert fusion["attention"]["heads"] == 2 and fusion["attention"]["dim"] == base.file.fusion.choices["attention"]["dim"]
    assert space.file.optimizer.shared["lr"].log is False
    assert space.file.encoders == base.file.encoders and space.file.loss == base.file.loss
    assert space.raw_text().startswith("# my.yaml extends image_text")  # what the search logs: the whole space
    assert yaml.safe_load(space.raw_text())["task"] == "posters"


def test_extends_errors_name_the_file_and_its_base(tmp_path):
    bad = _write(tmp_path, "extends: image_text\nfusion:\n  choices:\n    attention: {heads: 0}\n")
    with pytest.raises(ConfigError, match=r"my.yaml \(extends image_text\): fusion.choices.attention.heads: "
                                          r"must be >= 1, but got 0"):
        load_space(space=bad)
    with pytest.raises(ConfigError, match="extends: unknown space 'nope'; known: audio_video"):
        load_space(space=_write(tmp_path, "extends: nope\n"))
    _write(tmp_path, "extends: b.yaml\n", "a.yaml")
    _write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="a cycle"):
        load_space(space=tmp_path / "a.yaml")


def test_extends_a_file_beside_it(tmp_path):
    _write(tmp_path, "extends: image_text\ntask: mine\nhead: {hidden: 32}\n", "base.yaml")
    space = load_space(space=_write(tmp_path, "extends: base.yaml\nhead: {dropout: 0.2}\n"))
    assert (space.task, space.file.head.hidden, space.file.head.dropout) == ("mine", 32, 0.2)


def test_merge_space():
    assert merge_space({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2], "e": None}) == \
        {"a": {"b": 1, "c": 3}, "d": [2], "e": None}
    assert merge_space({"a": {"type": "int", "low": 1, "high": 3}}, {"a": {"type": "categorical", "choices": [1]}}) == \
        {"a": {"type": "categorical", "choices": [1]}}


def test_a_partial_file_lists_every_problem(tmp_path):
    path = _write(tmp_path, "fusion:\n  choices:\n    mid: {dim: 32}\nhead: {hiden: 3}\n")
    with pytest.raises(ConfigError) as info:
        load_space(space=path)
    message = str(info.value)
    for problem in ("task: missing key", "modalities: missing key", "encoders: missing key", "loss: missing key",
                    "optimizer: missing key", "head.hiden: unknown key; did you mean 'hidden'?"):
        assert problem in message
    assert "more problems" not in message and "\n" not in message
    assert "can start with `extends: NAME`" in message


def test_builtin_spaces_are_complete():
    tasks = builtin_tasks()
    assert tasks  # the loop below checks something
    for task in tasks:
        assert "extends" not in yaml.safe_load((SPACES_DIR / f"{task}.yaml").read_text())

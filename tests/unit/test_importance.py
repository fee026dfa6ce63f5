"""Per-input importance of a served model (serving/importance.py) and ``autofusion explain``, on
real trained models logged to a sqlite store in tmp_path: a manifest whose label depends only on
the text (the text's importance is clearly above the image's, whose interval covers zero), one
whose label depends only on one tabular field (that field's importance is above the others'),
the command on a registered model, and its one-line refusals."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from autofusion import tracking
from autofusion.cli import cli
from autofusion.data.prepare import prepare_data
from autofusion.data.splits import TRAIN
from autofusion.models.build import build_model
from autofusion.search.records import PERMUTATION
from autofusion.serving.explain import explain_manifest, split_frame
from autofusion.serving.importance import input_importance, targets
from autofusion.serving.perturb import Perturbation
from autofusion.spaces import load_space
from autofusion.spaces.load import SPACES_DIR
from autofusion.train.loop import fit
from autofusion.trial import TrialConfig
from tests.helpers import flat_config, log_in_new_run

WORDS = {"pos": ["sunny", "happy", "bright"], "neg": ["rainy", "sad", "dark"]}


def _text_manifest(root, n: int = 120):
    """Images of a random grey and a text whose mood word is the label; nothing else carries it."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        label = ("pos", "neg")[i % 2]
        Image.fromarray(np.full((8, 8, 3), int(rng.integers(0, 256)), np.uint8)).save(root / "img" / f"{i}.png")
        words = [str(rng.choice(WORDS[label])), *rng.choice(["the", "a", "day", "walk", "street", "park"], 3)]
        rng.shuffle(words)
        rows.append({"image": f"img/{i}.png", "text": " ".join(words), "label": label})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _trained(data, flat: dict, modalities: list[str]):
    tc = TrialConfig.from_flat(flat, modalities)
    torch.manual_seed(0)
    model = build_model(tc, data.meta)
    fit(model, data, tc, device=torch.device("cpu"))
    return model.eval(), tc


@pytest.fixture(scope="module")
def text_only(tmp_path_factory, store_template):
    """(the served python model, data, store URI, registered model URI, manifest)."""
    root = tmp_path_factory.mktemp("text-only")
    manifest = _text_manifest(root / "data")
    data = prepare_data(manifest, load_space("image_text"), seed=0, home=root / "home")
    flat = flat_config(["image", "text"], {"image": "small_cnn", "text": "embedding_bag"}, "mid",
                       **{"encoder.image.small_cnn.width": 8, "encoder.text.embedding_bag.dim": 16,
                          "optimizer.lr": 1e-2, "train.epochs": 8})
    model, tc = _trained(data, flat, ["image", "text"])
    model_uri, uri = log_in_new_run(root, model, tc, data, store_template)
    tracking.client(uri)
    version = mlflow.register_model(model_uri, "text_only")
    py = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    return py, data, uri, f"models:/text_only/{version.version}", manifest


def test_the_text_matters_and_the_image_does_not(text_only):
    py, data, _, _, _ = text_only
    idx = np.flatnonzero(data.split != TRAIN)  # validation and test rows: 36 here
    imp = input_importance(py, split_frame(data, idx), data.targets[idx], "val_f1_macro", split="held-out")
    by = {i.name: i for i in imp.inputs}
    assert [i.name for i in imp.inputs] == ["text", "image"] and imp.rows == len(idx) and imp.base > 0.9
    text, image = by["text"], by["image"]
    for kind in ("removal", "permutation"):
        t, i = getattr(text, kind), getattr(image, kind)
        assert t.low > 0.2 and t.value > i.value + 0.3, (kind, t, i)  # clearly above the image
        assert i.low <= 0 <= i.high, (kind, i)  # the rows cannot tell the image from useless
        assert t.low <= t.value <= t.high
    assert imp.metrics()["importance.text"] == text.removal.value
    assert imp.metrics()["importance_permutation.image.high"] == image.permutation.high
    frame, order = split_frame(data, idx), np.random.default_rng(3).permutation(len(idx))
    cache: dict = {}
    py.outputs(frame, cache)
    for name in ("text", "image"):  # a pass is the model on the rows with that input shuffled
        got = py.outputs(frame, cache, Perturbation(name, (name,), PERMUTATION, order))
        np.testing.assert_allclose(got, py.outputs(frame.assign(**{name: frame[name].to_numpy()[order]})), atol=1e-5)


def test_explain_prints_the_table_for_a_registered_model(text_only):
    _, _, uri, registered, manifest = text_only
    res = CliRunner().invoke(cli, ["explain", "--model", registered, "--data", str(manifest), "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    rows = [ln.split() for ln in lines if ln.strip().split(" ")[0] in ("text", "image")]
    assert [r[0] for r in rows] == ["text", "image"]  # the input's name first, the most important on top
    assert float(rows[0][1]) > 0.2 and "drop in f1_macro" in res.output and "on 120 rows of manifest.csv" in res.output
    imp = explain_manifest(uri, registered, manifest, rows=40, seed=1)  # a sample of the rows
    assert imp.rows == 40 and imp.inputs[0].name == "text"


def test_explain_refuses_a_bad_model_or_a_manifest_without_labels_in_one_line(text_only, tmp_path):
    _, _, uri, registered, manifest = text_only
    for args, words in (
        (["--model", "models:/text_only/99", "--data", str(manifest)], "cannot load model 'models:/text_only/99'"),
        (["--model", registered, "--data", str(_without_labels(manifest, tmp_path))], "no label column"),
        (["--model", registered, "--data", str(manifest), "--metric", "rmse"], "metric 'rmse'"),
    ):
        res = CliRunner().invoke(cli, ["explain", *args, "--tracking-uri", uri])
        assert res.exit_code == 2, res.output
        assert len(res.output.strip().splitlines()) == 1 and words in res.output, res.output
        assert "Traceback" not in res.output


def test_explain_matches_the_models_classes_whatever_their_case(text_only, tmp_path):
    """Labels the search read as one class however cased (``labels.spellings``) are scored the same."""
    _, _, uri, registered, manifest = text_only
    df = pd.read_csv(manifest)
    df["image"] = [str(manifest.parent / p) for p in df["image"]]
    df["label"] = df["label"].str.upper()
    df.to_csv(tmp_path / "upper.csv", index=False)
    same = explain_manifest(uri, registered, manifest, rows=40, seed=1)
    upper = explain_manifest(uri, registered, tmp_path / "upper.csv", rows=40, seed=1)
    assert upper.base == same.base and upper.inputs[0].name == "text"


def _without_labels(manifest, tmp_path):
    df = pd.read_csv(manifest).drop(columns="label")
    df["image"] = [str(manifest.parent / p) for p in df["image"]]
    df.to_csv(tmp_path / "unlabelled.csv", index=False)
    return tmp_path / "unlabelled.csv"


def test_each_tabular_field_is_an_input_of_its_own(tmp_path, store_template):
    """The label follows ``area`` only: removed or permuted, area costs the model most; the table
    as one input costs it as much; the other fields about nothing."""
    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(96):
        y = i % 2
        grey = np.full((8, 8, 3), int(rng.integers(0, 255)), dtype=np.uint8)
        Image.fromarray(grey).save(tmp_path / "img" / f"{i}.png")
        rows.append({"photo": f"img/{i}.png", "area": float(rng.normal(2.0 if y else -2.0, 0.5)),
                     "brand": f"b{int(rng.integers(0, 3))}", "rooms": int(rng.integers(1, 4)),
                     "label": ["cheap", "dear"][y]})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(yaml.safe_load((SPACES_DIR / "image_tabular.yaml").read_text())))
    data = prepare_data(tmp_path / "m.csv", load_space(space=space), seed=0, home=tmp_path / "home")
    assert [t.name for t in targets(data.meta)] == ["image", "tabular", "tabular.area", "tabular.brand",
                                                    "tabular.rooms"]
    flat = {"encoder.image": "small_cnn", "encoder.image.small_cnn.width": 8, "encoder.tabular": "mlp",
            "fusion.type": "mid", "fusion.weights": "fixed", "head.hidden": 16, "head.dropout": 0.0,
            "loss.type": "cross_entropy", "optimizer.type": "adam", "optimizer.lr": 1e-2, "train.batch_size": 8,
            "train.epochs": 4}
    model, tc = _trained(data, flat, ["image", "tabular"])
    model_uri, uri = log_in_new_run(tmp_path, model, tc, data, store_template)
    tracking.client(uri)
    py = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    idx = np.flatnonzero(data.split != TRAIN)
    imp = input_importance(py, split_frame(data, idx), data.targets[idx], "val_accuracy", split="held-out")
    by = {i.name: i for i in imp.inputs}
    assert imp.base > 0.9
    assert by["tabular.area"].removal.value > 0.2 and by["tabular.area"].permutation.value > 0.2
    assert by["tabular"].removal.value > 0.2
    for other in ("tabular.brand", "tabular.rooms"):
        assert by[other].permutation.value < by["tabular.area"].permutation.value - 0.2, by
    frame, order = split_frame(data, idx), np.random.default_rng(3).permutation(len(idx))
    cache: dict = {}
    py.outputs(frame, cache)
    got = py.outputs(frame, cache, Perturbation("tabular", ("area",), PERMUTATION, order, field=True))
    np.testing.assert_allclose(got, py.outputs(frame.assign(area=frame["area"].to_numpy()[order])), atol=1e-5)


def test_a_drop_of_nothing_reads_as_zero_without_a_sign():
    """For a metric where lower is better the drop's sign is flipped: nothing lost is -0.0,
    which read ``-0.000 [0.000, -0.000]`` in the summary, an interval that looked reversed."""
    from autofusion.search.records import Drop

    assert Drop(-0.0, 0.0, -0.0).text() == "0.000 [0.000, 0.000]"
    assert Drop(-0.0123, -0.02, 0.001).text() == "-0.012 [-0.020, 0.001]"

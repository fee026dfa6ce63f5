"""The sensor modality: readings written in the manifest (JSON lists), .npy and .csv files,
their length and channels chosen from the data, the TCN encoder, and a manifest of sensor
columns (several, one input each) that trains and predicts from raw request rows."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autofusion.data.manifest import resolve_columns
from autofusion.data.prepare import prepare_data
from autofusion.modalities import MODALITIES, DecodeError, ModalityInfo
from autofusion.modalities.sensor import read_series
from autofusion.models import ENCODERS
from autofusion.models.build import build_model
from autofusion.serving.inputs import model_inputs
from autofusion.spaces.auto import write_auto_space
from autofusion.train.loop import fit
from autofusion.trial import TrialConfig

SENSOR = MODALITIES.get("sensor")


def test_cells_of_every_kind(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(10.0).reshape(5, 2))
    (tmp_path / "b.csv").write_text("t,x,y\n2020-01-01,1,2\n2020-01-02,3,\n")
    assert read_series("[1, 2, 3]").shape == (3, 1)
    assert read_series([[1, 2], [3, 4], [5, 6]]).shape == (3, 2)  # a JSONL list: rows are time steps
    assert read_series(str(tmp_path / "a.npy")).tolist() == np.arange(10.0).reshape(5, 2).tolist()
    b = read_series(str(tmp_path / "b.csv"))
    assert b.shape == (2, 2) and b[0].tolist() == [1, 2] and np.isnan(b[1, 1])  # header and timestamps left out
    assert read_series((tmp_path / "a.npy").read_bytes()).shape == (5, 2)  # a served file's bytes


@pytest.mark.parametrize("cell, message", [
    ("[1, 2, oops]", "not a list of numbers"),
    ("[]", "expected readings of shape"),
    ("missing.npy", "file not found"),
])
def test_bad_cells(cell, message):
    with pytest.raises(DecodeError, match=message):
        read_series(cell)


def test_decode_cuts_pads_and_zeroes_missing_readings():
    prep = {"length": 4, "channels": 2}
    x = SENSOR.decode("[1, null, 3, 4, 5, 6]", prep)
    assert x.dtype == np.float32 and x.shape == (2, 4)
    assert x.tolist() == [[1, 0, 3, 4], [0, 0, 0, 0]]
    with pytest.raises(DecodeError, match="3 channels, more than modalities.sensor.channels=2"):
        SENSOR.decode([[1, 2, 3]], prep)


def test_length_and_channels_chosen_from_the_training_series():
    sample = [json.dumps(list(range(n))) for n in (40, 50, 60, 100)] + [[[1, 2]] * 10, "not readings"]
    prep, chosen = SENSOR.choose({"length": None, "channels": None}, sample, cuda=False)
    assert prep["channels"] == 2 and prep["length"] % 8 == 0 and 60 <= prep["length"] <= 100
    assert [c.key for c in chosen] == ["sensor.length", "sensor.channels"]
    assert SENSOR.choose({"length": 16, "channels": 1}, sample, cuda=False) == ({"length": 16, "channels": 1}, [])


def test_sensor_columns_are_recognised_before_text():
    df = pd.DataFrame({"vib": ["[0.1, 0.2, 0.3]", "[0.3, 0.1, 0.2]", "[1, 2, 3]"], "file": ["a.npy", "b.npy", "c.npy"],
                       "label": ["a", "b", "a"]})
    roles = resolve_columns(df, Path("m.csv"), ["sensor", "text"], optional=("text", "split", "group"))
    assert roles == {"sensor": ["vib", "file"], "label": ["label"]}


@pytest.mark.parametrize("levels, length", [(1, 5), (4, 200)])
def test_tcn_tokens_and_gradients(levels, length):
    enc = ENCODERS["sensor"].get("tcn")(ModalityInfo("sensor", extra={"channels": 3, "length": length}),
                                        width=8, levels=levels, max_tokens=16)
    x = torch.randn(4, 3, length)
    toks, pad = enc.tokens(x)
    assert toks.shape == (4, min(length, 16), 8) and pad is None and enc(x).shape == (4, 8)
    enc(x).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def _manifest(root: Path, n: int = 40) -> Path:
    """Two sensor columns (readings in the manifest, a .npy file per row) and a label that
    depends on the readings' frequency."""
    rng = np.random.default_rng(0)
    (root / "npy").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        y = i % 2
        t = np.arange(30 + i % 5)
        x = np.sin(t * (0.8 if y else 0.1)) + rng.normal(0, 0.1, len(t))
        np.save(root / "npy" / f"{i}.npy", np.stack([x, x ** 2], axis=1))
        rows.append({"vibration": json.dumps([round(v, 3) for v in x]), "log": f"npy/{i}.npy", "label": "ab"[y]})
    path = root / "m.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_sensor_manifest_trains_and_predicts(tmp_path):
    path = _manifest(tmp_path)
    space = write_auto_space(path, home=tmp_path / "home")
    assert space.modalities == ["sensor"]
    data = prepare_data(path, space, home=tmp_path / "home")
    assert [i["name"] for i in data.meta.inputs] == ["vibration", "log"]
    assert data.meta.prep["sensor"] == {"length": 40, "channels": 2}
    assert data.arrays["vibration"].shape == (40, 2, 40) and not data.arrays["vibration"][:, 1].any()
    flat = {"encoder.sensor": "tcn", "encoder.sensor.tcn.width": 8, "fusion.type": "mid", "head.hidden": 16,
            "head.dropout": 0.0, "loss.type": "cross_entropy", "optimizer.type": "adam", "optimizer.lr": 1e-2,
            "train.batch_size": 8, "train.epochs": 2}
    tc = TrialConfig.from_flat(flat, ["sensor"])
    model = build_model(tc, data.meta)
    assert len(fit(model, data, tc, device=torch.device("cpu"))) == 2
    request = pd.DataFrame({
        "vibration": ["[0.1, 0.5, 0.9]", json.loads(pd.read_csv(path)["vibration"][0])],  # JSON text, or a list
        "log": [str(tmp_path / "npy" / "0.npy"), base64.b64encode((tmp_path / "npy" / "1.npy").read_bytes()).decode()],
    })
    inputs, present = model_inputs(request, data.meta, {"vibration": None, "log": None}, {})
    assert inputs["vibration"].shape == (2, 2, 40)
    assert np.array_equal(inputs["log"][0].numpy(), data.arrays["log"][0])
    model.eval()
    with torch.no_grad():
        assert model(inputs, present).shape == (2, 2)


def test_unreadable_readings_are_bad_rows(tmp_path):
    path = _manifest(tmp_path, n=20)
    df = pd.read_csv(path)
    df.loc[3, "vibration"] = "[0.1, 0.2, oops" + ", 0.5" * 40 + "]"
    df.to_csv(path, index=False)
    space = write_auto_space(path, home=tmp_path / "home")
    with pytest.raises(Exception, match=r"row 4 vibration: '\[0.1, 0.2, oops, 0.5.*\.\.\.': not a list of numbers"):
        prepare_data(path, space, home=tmp_path / "home")
    assert prepare_data(path, space, home=tmp_path / "home", on_bad_rows="skip").meta.skipped == 1

"""Strictly positive, right-skewed regression targets (prices) are learned and scored on the log
scale and predicted back on their own; other numeric targets stay on theirs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autofusion.data.labels import log_target, target_scale
from autofusion.serving.pyfunc import output_frame
from tests.helpers import fake_data


def test_only_positive_skewed_targets_are_logged():
    rng = np.random.default_rng(0)
    prices = np.exp(rng.normal(12.5, 0.8, 400))  # lognormal, like house prices
    assert log_target(prices)
    assert not log_target(np.log(prices))  # symmetric
    assert not log_target(np.r_[prices, 0.0])  # reaches 0: a log would be -inf
    assert not log_target(rng.normal(300.0, 5.0, 400))  # positive but symmetric (kelvin)
    assert not log_target(np.ones((10, 2)))  # several targets
    scale = target_scale(prices)
    assert scale["log"] and scale["mean"] == pytest.approx(np.log(prices).mean())
    assert scale["std"] == pytest.approx(np.log(prices).std())


def test_predictions_are_mapped_back_from_the_log_scale():
    meta = fake_data(["text"], n=8, target="regression").meta
    out = np.log(np.array([[100_000.0], [2_500_000.0]]))
    meta.target_scale = {"mean": 12.0, "std": 1.0, "log": True}
    assert np.allclose(output_frame(out, meta)["prediction"], [100_000.0, 2_500_000.0])
    meta.target_scale = {"mean": 12.0, "std": 1.0}  # a model logged before the log scale existed
    pd.testing.assert_frame_equal(output_frame(out, meta), pd.DataFrame({"prediction": out[:, 0]}))


def test_a_search_on_prices_learns_their_log(tmp_path):
    from autofusion.data.prepare import prepare_data
    from autofusion.data.splits import TRAIN
    from autofusion.spaces.auto import write_auto_space

    rng = np.random.default_rng(1)
    area = rng.uniform(50, 400, 60)
    price = np.exp(10 + area / 100 + rng.normal(0, 0.5, 60))
    df = pd.DataFrame({"area": area, "rooms": rng.integers(1, 6, 60), "price": price})
    df.to_csv(tmp_path / "houses.csv", index=False)
    space = write_auto_space(tmp_path / "houses.csv", {"label": ["price"]}, home=tmp_path)
    data = prepare_data(tmp_path / "houses.csv", space, columns={"label": ["price"]}, home=tmp_path)
    assert data.meta.target_scale["log"] and any(c.startswith("target=log(price)") for c in data.meta.chosen)
    rows = data.row_ids - 1
    assert np.allclose(data.targets[:, 0], np.log(df["price"].to_numpy()[rows]), rtol=1e-5)
    assert data.meta.target_scale["mean"] == pytest.approx(float(data.targets[data.split == TRAIN].mean()), rel=1e-5)
    huber = space.file.loss.choices["huber"]["delta"]
    assert huber == pytest.approx(float(np.log(df["price"]).std()), rel=0.05)  # on the log scale too

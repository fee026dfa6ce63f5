"""The served-latency measurement (autofusion/serving/latency.py) on models whose cost is known:
each request sleeps a fixed time plus a time per row, as a served model's preprocessing and
forward pass take."""

from __future__ import annotations

import time

import pandas as pd

from autofusion.serving.latency import BATCH, BATCH_SECONDS, MIN_BATCH, measure


class Timed:
    """Answers a request after ``per_request + per_row * rows`` seconds."""

    def __init__(self, per_request: float, per_row: float) -> None:
        self.per_request, self.per_row = per_request, per_row

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        time.sleep(self.per_request + self.per_row * len(df))
        return df


def test_a_fast_model_is_measured_on_full_batches_a_slow_one_on_what_fits():
    rows = pd.DataFrame({"x": range(10)})
    fast = measure(Timed(0.0, 1e-5), rows, runs=5, budget_s=0.05)
    assert fast.batch == BATCH and fast.runs >= 5
    slow = measure(Timed(0.2, 0.005), rows, runs=5, budget_s=0.05)  # 205 ms a row alone
    assert MIN_BATCH <= slow.batch <= BATCH_SECONDS / 0.2 and slow.p50_ms >= 200
    assert slow.rows_per_s < slow.batch / 0.2  # the batch paid its fixed cost and its rows

"""Scores that see every class: accuracy, macro F1 / recall / precision and each class's recall
and precision, for every epoch on validation and for the test evaluation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autofusion.metrics import DEFAULT_METRIC, class_keys, is_macro
from autofusion.train.metrics import class_scores, confusion, output_metrics
from tests.helpers import fake_data


def test_a_majority_class_model_scores_its_share_in_accuracy_but_not_in_macro_scores():
    y = torch.tensor([0] * 61 + [1] * 39)
    s = class_scores(torch.zeros(100, dtype=torch.long), y, ["non_offensive", "offensive"])
    assert s["accuracy"] == pytest.approx(0.61) and s["recall_macro"] == pytest.approx(0.5)
    assert s["f1_macro"] == pytest.approx(0.5 * 2 * 0.61 / 1.61)  # the minority's F1 is 0
    assert (s["recall.offensive"], s["precision.offensive"], s["recall.non_offensive"]) == (0.0, 0.0, 1.0)
    assert s["precision.non_offensive"] == pytest.approx(0.61)


def test_per_class_scores_match_a_hand_count():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0])
    s = class_scores(pred, y, ["a", "b", "c"])
    assert s["recall.a"] == 0.5 and s["precision.a"] == 0.5
    assert s["recall.b"] == 1.0 and s["precision.b"] == pytest.approx(2 / 3)
    assert s["recall.c"] == 0.5 and s["precision.c"] == 1.0
    assert s["recall_macro"] == pytest.approx(2 / 3) and s["accuracy"] == pytest.approx(4 / 6)


def test_the_confusion_matrix_matches_scikit_learns_for_scores_and_for_ids():
    from sklearn.metrics import confusion_matrix

    rng = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (50,), generator=rng)
    scores = torch.randn(50, 4, generator=rng)
    expected = confusion_matrix(y.numpy(), scores.argmax(dim=1).numpy(), labels=[0, 1, 2, 3])
    assert (confusion(scores, y, 4) == expected).all()
    assert (confusion(scores.argmax(dim=1), y, 4) == expected).all()
    assert confusion(torch.tensor([1, 1]), torch.tensor([1, 1]), 3).tolist() == [[0, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_scoring_a_classification_does_not_import_torchmetrics():
    """Importing torchmetrics costs seconds in every trial process; class scores need none of it."""
    code = ("import sys, torch; from autofusion.train.metrics import output_metrics, confusion; "
            "from tests.helpers import fake_data; d = fake_data(['image', 'text']); "
            "output_metrics(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), d.meta, prefix='val'); "
            "confusion(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), 3); "
            "assert 'torchmetrics' not in sys.modules, 'torchmetrics was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_class_names_become_valid_unique_metric_keys():
    assert class_keys(["a/b c", "é!", "x?", "x!"]) == ["a_b c", "é_", "x_", "x__3"]
    zeros = torch.zeros(4, dtype=torch.long)
    many = class_scores(zeros, zeros, [f"c{i}" for i in range(30)])
    assert "recall.c0" not in many and "f1_macro" in many  # beyond 20 classes: macro scores only


def test_validation_and_test_metrics_carry_them():
    data = fake_data(["text"], n=12, classes=3)
    out = torch.randn(12, 3)
    res = output_metrics(out, torch.from_numpy(data.targets), data.meta, prefix="test")
    assert {"test_accuracy", "test_f1_macro", "test_recall_macro", "test_precision_macro", "test_recall.c0",
            "test_precision.c2"} <= set(res)


def test_classification_searches_rank_by_macro_f1_by_default():
    assert DEFAULT_METRIC["classification"] == ("val_f1_macro", "max")
    assert is_macro("val_f1_macro") and is_macro("val_recall_macro") and not is_macro("val_accuracy")


def test_r2_of_one_row_is_undefined_not_zero():
    """R2 divides by the targets' variance: one row has none, so it is NaN (a 0.0 would read
    as "no better than the mean"); the errors of that row are still measured."""
    import math

    meta = fake_data(["tabular"], target="regression").meta
    one = output_metrics(torch.tensor([[2.0]]), torch.tensor([[1.5]]), meta, prefix="test")
    assert math.isnan(one["test_r2"]) and one["test_mae"] == pytest.approx(0.5)
    two = output_metrics(torch.tensor([[2.0], [1.0]]), torch.tensor([[2.0], [1.0]]), meta, prefix="test")
    assert two["test_r2"] == pytest.approx(1.0)

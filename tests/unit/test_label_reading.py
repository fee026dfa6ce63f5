"""Labels as users type them. Written in several cases (``Positive``, `` positive ``): one class,
named by the spelling most rows use; the search says so before its trials, and a model's
classes are matched by ``autofusion explain`` whatever the case of a new file's labels.
Delimited (``drama|comedy``): multi-label, found without ``data.label_delimiter``."""

from __future__ import annotations

import pandas as pd
import pytest

from autofusion.data.labels import parse_labels, spellings, spellings_note, target_note
from autofusion.data.manifest import resolve_columns


class _Ds:
    target, label_delimiter = "auto", None


class _Classes:
    target, label_delimiter = "classification", None


class _Multi:  # as explain reads a multi-label model's manifest: the kind known, the delimiter not
    target, label_delimiter = "multilabel", None


def test_case_variants_of_a_label_are_one_class(tmp_path):
    col = pd.Series(["Positive"] * 5 + [" positive "] * 2 + ["POSITIVE", "negative", "negative", "Cat", None])
    kind, classes, y, bad = parse_labels(col, _Ds(), tmp_path / "m.csv", "sentiment")
    assert kind == "classification" and classes == ["Cat", "Positive", "negative"] and bad == {11: "empty label"}
    assert y[:8].tolist() == [1] * 8 and y[8:11].tolist() == [2, 2, 0]
    note = spellings_note(col)
    assert note == ("labels written in another case are one class: 'POSITIVE' (1 row) as 'Positive' (5), "
                    "'positive' (2 rows) as 'Positive' (5)")
    assert spellings(["a", "A"]) == {"a": "A"}  # a tie: the first in sort order names the class
    assert spellings_note(pd.Series(["x", "y", "x"])) is None


def test_data_inspect_prints_how_the_labels_and_columns_were_read(tmp_path):
    from click.testing import CliRunner

    from autofusion.cli import cli

    rows = [{"review": f"words number {i} here", "price": round(10 + 3.7 * i, 2), "sentiment": ["Good", "good", "bad"][i % 3]}
            for i in range(30)]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    res = CliRunner().invoke(cli, ["data", "inspect", str(tmp_path / "m.csv"), "--columns", "label=sentiment"],
                             env={"AUTOFUSION_HOME": str(tmp_path / "home")})
    assert res.exit_code == 0, res.output
    assert "read as" in res.output and "labels written in another case are one class" in res.output
    assert "tabular.numeric=['price']" in res.output


GENRES = ["drama|comedy", "comedy", "action|drama", "horror", "drama", "comedy|horror|action", "romance|drama",
          "action", "romance", "horror|comedy"] * 3


def test_delimited_labels_are_multilabel_without_being_told(tmp_path):
    col = pd.Series(GENRES)
    kind, classes, y, _ = parse_labels(col, _Ds(), tmp_path / "m.csv", "genres")
    assert kind == "multilabel" and classes == ["action", "comedy", "drama", "horror", "romance"]
    assert y[0].tolist() == [0, 1, 1, 0, 0] and y.shape == (30, 5)
    assert target_note(col, kind, "auto") == ("target=multilabel (labels split at '|': 5 labels in 10 combinations; "
                                              "--target classification keeps each combination a class)")
    kind, classes, _, _ = parse_labels(col, _Classes(), tmp_path / "m.csv", "genres")  # --target classification
    assert kind == "classification" and len(classes) == 10
    commas = pd.Series([g.replace("|", ", ") for g in GENRES])
    assert parse_labels(commas, _Multi(), tmp_path / "m.csv", "genres")[1] == classes_of(GENRES)
    assert resolve_columns(pd.DataFrame({"plot": ["a b c"] * 30, "genres": GENRES}), tmp_path / "m.csv",
                           ["text"])["label"] == ["genres"]


def classes_of(labels: list[str]) -> list[str]:
    return sorted({p for g in labels for p in g.split("|")})


def test_a_comma_inside_a_class_name_is_no_delimiter(tmp_path):
    cities = pd.Series(["New York, NY", "Boston, MA", "Austin, TX", "Boston, MA"] * 5)
    kind, classes, _, _ = parse_labels(cities, _Ds(), tmp_path / "m.csv", "city")
    assert kind == "classification" and classes == ["Austin, TX", "Boston, MA", "New York, NY"]


def test_decimal_comma_numbers_are_a_regression_not_labels_split_at_commas(tmp_path):
    ratings = pd.Series([f"{1 + (i * 0.37) % 4:.1f}".replace(".", ",") for i in range(60)])  # 3,5 as a comma locale writes 3.5
    kind, _, y, _ = parse_labels(ratings, _Ds(), tmp_path / "m.csv", "rating")
    assert kind == "regression" and y[1, 0] == pytest.approx(1.4)

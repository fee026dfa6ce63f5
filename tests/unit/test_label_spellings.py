"""Hand-typed labels written in several cases (``Positive``, `` positive ``) are one class,
named by the spelling most rows use; the search says so before its trials, and a model's
classes are matched by ``autofusion explain`` whatever the case of a new file's labels."""

from __future__ import annotations

import pandas as pd

from autofusion.data.labels import parse_labels, spellings, spellings_note


class _Ds:
    target, label_delimiter = "auto", None


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

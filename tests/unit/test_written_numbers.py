"""Numbers as tables write them (``$1,234.50``, ``15%``, ``€ 12,99``, ``n/a``): read as numbers
by the tabular columns, the label, the column finder and the id check, with a column's
decimal mark fitted once and kept for a row served alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autofusion.data.labels import parse_labels
from autofusion.data.manifest import id_like, resolve_columns
from autofusion.data.numbers import decimal_mark, parse, to_numbers
from autofusion.modalities import MODALITIES
from autofusion.modalities.tabular import column_kind, numbers

TAB = MODALITIES.get("tabular")


@pytest.mark.parametrize("text, value", [
    ("$1,234.50", 1234.5), ("15%", 15.0), ("(300)", -300.0), ("1 234 567", 1234567.0), ("CHF 1'250", 1250.0),
    ("−3", -3.0), ("-$5", -5.0), ("$-5", -5.0), ("USD 1,200", 1200.0), ("1,200 USD", 1200.0), ("12 €", 12.0),
    ("£0.99", 0.99), (".5", 0.5), ("+7", 7.0), ("1,234", 1234.0),
])
def test_a_written_number_is_its_value(text, value):
    assert parse(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "1,2,3", "1.5.3", "5 kg", "A-100", "$", "12-15", "1,23,4.5", "n/a"])
def test_other_strings_are_no_number(text):
    assert np.isnan(parse(text))


def test_a_columns_decimal_comma_is_decided_once_and_kept_for_a_row_served_alone():
    assert decimal_mark(["12,99", "3,5", "1.234,50"]) == ","
    assert decimal_mark(["1,234", "5,000"]) == "."              # grouped thousands: a thousand, as in English
    assert decimal_mark(["1,234.5", "3,5"]) == "."              # a decimal point anywhere: the point
    np.testing.assert_allclose(to_numbers(pd.Series(["12,99", "1.234,5", "7"])), [12.99, 1234.5, 7.0])
    prep = {**TAB.Prep().model_dump(), "numeric": ["price"], "categorical": []}
    state = TAB.fit(pd.DataFrame({"price": ["€ 12,99", "€ 1.250,00", "€ 8,50", "€ 30,00"]}), prep)
    assert state["numeric"]["price"]["decimal"] == ","
    one = TAB.encode(pd.DataFrame({"price": ["€ 1,500"]}), prep, state)        # 1.5, as its column writes it
    assert one[0, 0] == pytest.approx(TAB.encode(pd.DataFrame({"price": [1.5]}), prep, state)[0, 0])


def test_formatted_numbers_and_missing_marks_make_a_numeric_column_not_text():
    prices = [f"${v:,.2f}" for v in np.linspace(900, 250_000, 60)] + ["-", "n/a", "#N/A"]
    assert column_kind(pd.Series(prices, dtype=object)) == "numeric"
    assert column_kind(pd.Series([f"{i % 90}%" for i in range(60)], dtype=object)) == "numeric"
    assert not MODALITIES.get("text").recognises(prices)
    x = numbers(pd.Series(prices, dtype=object))
    assert x[0] == pytest.approx(900.0) and np.isnan(x[-3:]).all()  # the marks are missing values


def test_unique_dates_and_prices_are_values_not_identifiers():
    assert not id_like("when", pd.Series([f"2023-01-{d:02d}" for d in range(1, 29)]))
    assert not id_like("price", pd.Series([f"${1000 + 37 * i:,}" for i in range(50)]))
    assert id_like("sku", pd.Series([f"A-{i}" for i in range(50)]))  # strings, a value per row: an id
    df = pd.DataFrame({"when": [f"2023-02-{d:02d}" for d in range(1, 29)],
                       "price": [f"${1000 + 37 * i:,}" for i in range(28)],
                       "note": [f"a long text about thing number {i} and more" for i in range(28)],
                       "label": ["a", "b"] * 14})
    roles = resolve_columns(df, Path("m.csv"), ["text", "tabular"])
    assert roles["tabular"] == ["when", "price"] and roles["text"] == ["note"]


def test_a_label_of_written_prices_is_a_regression_on_their_values(tmp_path):
    class Ds:
        target, label_delimiter = "auto", None

    col = pd.Series([f"${200_000 + 1_250 * i:,}" for i in range(40)] + [""], dtype=object)
    kind, names, y, bad = parse_labels(col, Ds(), tmp_path / "m.csv", "price")
    assert kind == "regression" and names == ["price"] and bad == {40: "empty label"}
    assert y[:3, 0].tolist() == [200_000.0, 201_250.0, 202_500.0]
    few = pd.Series(["1", "2", "3", "1", "2"] * 4, dtype=object)  # strings pandas reads: still classes
    assert parse_labels(few, Ds(), tmp_path / "m.csv", "grade")[0] == "classification"


def test_a_column_of_numbers_with_one_unit_is_numeric_and_keeps_its_unit_for_a_served_row():
    runtimes = [f"{60 + 7 * i} min" for i in range(40)] + ["90 Min", "n/a"]
    assert column_kind(pd.Series(runtimes, dtype=object)) == "numeric"
    assert not MODALITIES.get("text").recognises(runtimes)
    np.testing.assert_allclose(to_numbers(pd.Series(["1,248 CC", "998 cc", "1498 CC"])), [1248, 998, 1498])
    np.testing.assert_allclose(to_numbers(pd.Series(["1.5 baths", "2 baths", "1 bath"])), [1.5, 2, 1])  # plurals
    mixed = [f"{i} {u}" for i, u in zip(range(40), ["kg", "lb", "g", "oz"] * 10)]  # no one unit: no number
    assert np.isnan(to_numbers(pd.Series(mixed))).all()
    prep = {**TAB.Prep().model_dump(), "numeric": ["runtime"], "categorical": []}
    state = TAB.fit(pd.DataFrame({"runtime": runtimes}), prep)
    assert state["numeric"]["runtime"]["unit"] == "min"
    one = TAB.encode(pd.DataFrame({"runtime": ["95 min"]}), prep, state)  # alone, its unit as its column's
    assert one[0, 0] == pytest.approx(TAB.encode(pd.DataFrame({"runtime": [95]}), prep, state)[0, 0])

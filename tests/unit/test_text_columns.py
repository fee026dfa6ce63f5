"""Tables with text as they come: several text columns found without --columns (sentences, and
short strings with too many distinct values to be categories), read one input per column or
joined with their field names, an empty text cell read as an empty text; ``--target`` on
whole-number labels; ROC-AUC, PR-AUC and log loss against scikit-learn's on the same outputs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from autofusion.cli import cli
from autofusion.data.manifest import resolve_columns
from autofusion.data.prepare import prepare_data
from autofusion.data.rows import trial_inputs
from autofusion.errors import DataError
from autofusion.modalities.text import join_fields
from autofusion.models.build import build_model
from autofusion.search.features import build_features
from autofusion.spaces.auto import find_modalities, write_auto_space
from autofusion.train.loop import fit
from autofusion.train.metrics import probability_scores
from autofusion.trial import TrialConfig
from tests.helpers import flat_config, log_in_new_run

FIRST = ["Ann", "Bo", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ida", "Jo", "Kim", "Lou"]
LAST = ["Smith", "Jones", "Brown", "Lee", "Khan", "Diaz", "Wu", "Novak", "Ivanov", "Rossi"]


def _movies(root: Path, n: int = 80, empty_every: int = 0) -> Path:
    """Movies: a plot (sentences), a title and a director (short strings with many distinct
    values), a cast list, a year and a 0/1 label carried by the plot's words only."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = i % 2
        plot = f"{'a grim family saga' if label else 'a light road comedy'} about the number {i} and friends"
        rows.append({"movie_id": f"m{i:04d}", "Title": f"The {FIRST[i % 12]} Story {i}",
                     "plot": "" if empty_every and i % empty_every == 0 else plot,
                     "Director": f"{FIRST[(i * 7) % 12]} {LAST[i % 10]}",
                     "Actors": f"{FIRST[i % 12]} {LAST[(i + 3) % 10]}, {FIRST[(i + 5) % 12]} {LAST[i % 10]}",
                     "Year": int(rng.integers(1990, 2020)), "label": label})
    path = root / "movies.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_every_text_column_is_found_without_columns(tmp_path):
    found = find_modalities(_movies(tmp_path))
    assert found.roles["text"] == ["Title", "plot", "Director", "Actors"]  # in the manifest's order
    assert found.roles["tabular"] == ["Year"] and found.joinable == ["text"]
    assert (found.inputs, found.fewest_inputs) == (5, 2)  # one per text column + tabular; joined: text + tabular
    assert "movie_id" not in sum(found.roles.values(), [])  # an id is never text


def test_several_name_matches_are_all_text_when_their_contents_are():
    df = pd.DataFrame({"Title": [f"Film number {i}" for i in range(30)],
                       "Description": [f"a long story of people {i} in a town" for i in range(30)],
                       "label": [i % 2 for i in range(30)]})
    roles = resolve_columns(df, Path("m.csv"), ["text"])
    assert roles == {"text": ["Title", "Description"], "label": ["label"]}


def test_a_text_column_taken_by_its_name_leaves_room_for_the_others():
    """A review table: its ``Title`` has few distinct values (so only its name says it is text),
    its ``Body`` is named like nothing; both are text, and the brand codes are categories."""
    rng = np.random.default_rng(0)
    words = ["great", "poor", "fine", "awful", "lovely", "cheap", "sturdy", "flimsy"]
    df = pd.DataFrame({"Title": [f"{words[i % 8]} shoes" for i in range(200)],
                       "Body": ["" if i % 13 == 0 else " ".join(rng.choice(words, 7)) for i in range(200)],
                       "Brand": [f"brand_{rng.integers(80)}" for _ in range(200)],
                       "Rating": [1 + i % 5 for i in range(200)]})
    roles = resolve_columns(df, Path("m.csv"), ["text", "tabular"], flag={"label": ["Rating"]})
    assert roles == {"text": ["Title", "Body"], "tabular": ["Brand"], "label": ["Rating"]}
    given = resolve_columns(df, Path("m.csv"), ["text", "tabular"], flag={"label": ["Rating"], "text": ["Title"]})
    assert given["text"] == ["Title"]  # what --columns names is all that role takes


def test_chinese_and_japanese_reviews_are_text_one_token_per_character():
    """Scripts written without spaces: a review is text (its characters count as words), and
    each character is a token; English is tokenised as before, Korean (spaced) by its words."""
    from autofusion.modalities import MODALITIES
    from autofusion.modalities.text import tokenize

    rng = np.random.default_rng(0)
    reviews = ["".join(rng.choice(list("这个产品非常好用质量很棒物流也快太差了"), 12)) for _ in range(60)]
    assert MODALITIES.get("text").recognises(reviews)
    assert MODALITIES.get("text").recognises([r[:6] + "です" for r in reviews])
    assert tokenize("iPhone很好用, really! 東京タワー 안녕하세요 친구") == [
        "iphone", "很", "好", "用", ",", "really", "!", "東", "京", "タ", "ワ", "ー", "안녕하세요", "친구"]
    assert tokenize("Hello, world: it's 3.5 stars") == ["hello", ",", "world", ":", "it", "'", "s", "3", ".", "5",
                                                         "stars"]


@pytest.mark.parametrize("values, text", [
    ([f"{FIRST[i % 12]} {LAST[i % 10]}" for i in range(60)], True),      # names: many distinct, with a space
    ([["drama", "comedy", "horror"][i % 3] for i in range(60)], False),   # few values: categories
    ([f"X{i:05d}" for i in range(60)], False),                            # one-token codes: identifiers
    ([f"scan_{i}.dcm" for i in range(60)], False),                        # file names no modality reads
    ([str(i * 1.5) for i in range(60)], False),                           # numbers written as text
])
def test_short_strings_are_text_only_when_they_cannot_be_categories(values, text):
    from autofusion.modalities import MODALITIES

    assert MODALITIES.get("text").recognises(values) is text


def test_join_fields_puts_each_field_after_its_name_and_skips_empty_ones():
    frame = pd.DataFrame({"Title": ["Up", ""], "Plot": ["a house flies", None]})
    assert join_fields(frame).tolist() == ["Title: Up\nPlot: a house flies", ""]


def _prepared(tmp_path: Path, n: int = 80, empty_every: int = 0):
    space = write_auto_space(_movies(tmp_path, n, empty_every), home=tmp_path / "home")
    data = prepare_data(_movies(tmp_path, n, empty_every), space, home=tmp_path / "home")
    build_features(data, space)
    return space, data


def _config(layout: str, **over) -> TrialConfig:
    flat = flat_config(["text", "tabular"], {"text": "tfidf", "tabular": "mlp"}, "mid", **{
        "encoder.text.layout": layout, "encoder.text.tfidf.dim": 16, "encoder.tabular.mlp.hidden": 16,
        "train.epochs": 6, "optimizer.lr": 3e-2, **over})
    return TrialConfig.from_flat(flat, ["text", "tabular"])


def test_a_trial_reads_the_columns_or_their_joined_text(tmp_path):
    _, data = _prepared(tmp_path)
    specs = data.meta.input_specs
    assert [s.name for s in specs] == ["Title", "plot", "Director", "Actors", "text", "tabular"]
    joined = next(s for s in specs if s.joined)
    assert joined.columns == ("Title", "plot", "Director", "Actors")
    assert data.raw["text"][0].startswith("Title: The Ann Story 0\nplot: a light road comedy")
    assert [s.name for s in trial_inputs(specs, ("text",))] == ["text", "tabular"]
    assert [s.name for s in trial_inputs(specs)] == ["Title", "plot", "Director", "Actors", "tabular"]
    assert list(build_model(_config("joined"), data.meta).inputs) == ["text", "tabular"]
    assert list(build_model(_config("columns"), data.meta).inputs) == ["Title", "plot", "Director", "Actors",
                                                                       "tabular"]


def test_both_layouts_train_and_serve_raw_rows(tmp_path, store_template):
    """A model of either layout learns the plot's words and predicts raw rows (the table's
    columns, no joined column) as the trained model does: the joined one logged and loaded
    through MLflow, the one-per-column one through the same pyfunc class from its files."""
    import json

    from autofusion.serving.pyfunc import (
        ArtifactContext,
        FusionPyfunc,
        save_model_files,
    )

    _, data = _prepared(tmp_path)
    rows = pd.read_csv(_movies(tmp_path)).iloc[[1, 2, 3, 4]]
    request = rows.drop(columns=["label", "movie_id"])
    for layout in ("joined", "columns"):
        tc = _config(layout)
        torch.manual_seed(0)
        model = build_model(tc, data.meta)
        history = fit(model, data, tc, device=torch.device("cpu"))
        assert max(h["val_accuracy"] for h in history) == 1.0, layout
        model.eval()
        if layout == "joined":
            model_uri, _ = log_in_new_run(tmp_path, model, tc, data, store_template, experiment=layout)
            pred = mlflow.pyfunc.load_model(model_uri).predict(request)
        else:
            folder = tmp_path / layout
            folder.mkdir()
            (folder / "meta.json").write_text(json.dumps(data.meta.to_json()))
            ctx = ArtifactContext({"meta": str(folder / "meta.json"), **save_model_files(folder, model, tc, data)})
            py = FusionPyfunc()
            py.load_context(ctx)
            pred = py.predict(ctx, request)
        assert pred["label"].astype(int).tolist() == rows["label"].tolist(), layout


def test_an_empty_text_cell_is_an_empty_text_not_a_bad_row(tmp_path):
    """In a space assembled from the data, an empty plot is an empty text: every row is kept
    (a search scores every test row), the input is present, and its text is empty."""
    _, data = _prepared(tmp_path, empty_every=5)
    assert data.meta.rows == 80 and data.meta.skipped == 0
    assert data.present["plot"].all() and (data.raw["plot"] == "").sum() == 16


def test_target_regression_reads_whole_numbers_as_numbers(tmp_path):
    path = tmp_path / "ratings.csv"
    pd.DataFrame({"review": [f"a review with words number {i}" for i in range(60)],
                  "rating": [1 + i % 5 for i in range(60)]}).to_csv(path, index=False)
    assert find_modalities(path, {"label": ["rating"]}).target == "classification"
    found = find_modalities(path, {"label": ["rating"]}, target="regression")
    assert (found.target, found.asked) == ("regression", True)
    space = write_auto_space(path, {"label": ["rating"]}, home=tmp_path / "h", target="regression")
    assert space.file.data.target == "regression" and set(space.file.loss.choices) == {"mse", "huber"}
    assert space.file.search.metric == "val_rmse"
    data = prepare_data(path, space, home=tmp_path / "h")
    assert data.meta.target == "regression" and data.meta.chosen[0].startswith("target=regression")
    auto = prepare_data(path, write_auto_space(path, {"label": ["rating"]}, home=tmp_path / "h"), home=tmp_path / "h")
    assert "--target regression predicts them as numbers" in auto.meta.chosen[0]  # 5 whole numbers read as classes


def test_target_flag_on_spaces_show_and_bad_values(tmp_path):
    path = tmp_path / "ratings.csv"
    pd.DataFrame({"review": [f"words {i} in a review" for i in range(40)],
                  "rating": [1 + i % 5 for i in range(40)]}).to_csv(path, index=False)
    res = CliRunner().invoke(cli, ["spaces", "show", "--data", str(path), "--columns", "label=rating",
                                   "--target", "regression"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.output)["data"]["target"] == "regression"
    bad = CliRunner().invoke(cli, ["search", "--data", str(path), "--target", "banana"])
    assert bad.exit_code == 2 and "banana" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    words = tmp_path / "words.csv"
    pd.DataFrame({"review": [f"words {i} in a review" for i in range(40)],
                  "label": ["good", "bad"] * 20}).to_csv(words, index=False)
    with pytest.raises(DataError, match="target regression, but 40 of 40 labels in column 'label' are not numbers"):
        find_modalities(words, target="regression")


def test_roc_auc_on_a_regression_stops_with_one_line(tmp_path, sqlite_uri):
    path = tmp_path / "prices.csv"
    pd.DataFrame({"review": [f"words {i} in a review" for i in range(40)],
                  "price": [1.5 + i for i in range(40)]}).to_csv(path, index=False)
    res = CliRunner().invoke(cli, ["search", "--data", str(path), "--columns", "label=price", "--metric",
                                   "val_roc_auc", "--tracking-uri", sqlite_uri])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and "val_roc_auc" in res.output and "val_rmse" in res.output


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_probability_scores_match_scikit_learn(classes):
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 200)
    logits = np.round(rng.normal(size=(200, classes)), 1)  # rounded: tied scores
    logits[np.arange(200), y] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    mine = probability_scores(p, y)
    if classes == 2:
        auc, ap = roc_auc_score(y, p[:, 1]), average_precision_score(y, p[:, 1])
    else:
        auc = roc_auc_score(y, p, multi_class="ovr")
        ap = average_precision_score(np.eye(classes)[y], p, average="macro")
    assert mine["roc_auc"] == pytest.approx(auc, abs=1e-12)
    assert mine["pr_auc"] == pytest.approx(ap, abs=1e-12)
    assert mine["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-9)

"""The tabular modality: which columns it takes and of which kind, what it learns on the
training rows, rows with missing values and categories never seen in training, its encoders
(one token, or one per column), and a manifest of image + tabular columns that trains,
survives the model's JSON metadata and predicts from raw request rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from autofusion.data.manifest import id_like, resolve_columns
from autofusion.data.prepare import DataMeta, prepare_data
from autofusion.data.splits import TRAIN
from autofusion.modalities import MODALITIES, ModalityInfo
from autofusion.modalities.tabular import UNKNOWN, column_kind, numbers
from autofusion.models import ENCODERS
from autofusion.models.build import build_model
from autofusion.serving.inputs import expected_columns, model_inputs
from autofusion.spaces.load import SPACES_DIR, load_space
from autofusion.train.loop import evaluate, fit
from autofusion.trial import TrialConfig

TAB = MODALITIES.get("tabular")


def prep_for(numeric: list[str], categorical: list[str]) -> dict:
    return TAB.defaults({**TAB.Prep().model_dump(), "numeric": numeric, "categorical": categorical})


@pytest.mark.parametrize("values, kind", [
    ([1.5, 2.0, None, 3.25], "numeric"),
    ([3, 1, 4, 1, 5, 9, 2, 6], "numeric"),                      # many whole numbers: a count, a size
    ([0, 1, 1, 0, None, 1], "categorical"),                     # a flag
    (["red", "blue", "red", "red", "blue", "red", "blue", "red", "red", "blue", "red"], "categorical"),
    ([True, False, True], "categorical"),
    (["a long free text number one", "another free text", "third"], None),  # every value different
    (["img/1.png", "img/2.png", "img/1.png"], None),            # file paths
    (["[0.1, 0.2]", "[0.3, 0.1]", "[0.1, 0.2]"], None),          # sensor readings
    ([None, "", None], None),
    ([f"brand_{i % 40}" for i in range(100)], "categorical"),  # one-token codes that repeat: categories
    ([f"sku{i}" for i in range(100)], None),                    # a value per row: an identifier
    ([f"sku{i // 2}" for i in range(100)], "categorical"),     # each twice
    ([f"sku{i}" for i in range(60)] + [f"sku{i}" for i in range(30)], None),  # mostly one row each
    ([f"2021-03-{1 + i % 28:02d}" for i in range(100)], "numeric"),  # dates: nanoseconds since 1970
    ([f"2021-03-{1 + i % 28:02d} {i % 24}:00" for i in range(100)], "numeric"),  # times too, not text
    ([f"{1 + i % 3}.{1 + i % 5}.{1 + i % 2}" for i in range(100)], "categorical"),  # versions are not dates
])
def test_column_kinds(values, kind):
    assert column_kind(pd.Series(values, dtype=object)) == kind


def test_a_date_means_the_same_from_a_csv_string_or_a_parquet_timestamp(tmp_path):
    """Dates and times are nanoseconds since 1970 however the file holds them, so a model
    trained on Parquet's timestamps predicts a CSV's date strings alike."""
    when = pd.Series(pd.to_datetime(["2021-01-01", "2021-01-02 10:30", None], format="mixed"), name="when")
    pd.DataFrame({"when": when}).to_parquet(tmp_path / "t.parquet")
    from_parquet = numbers(pd.read_parquet(tmp_path / "t.parquet")["when"])  # microseconds in the file
    from_csv = numbers(pd.Series(["2021-01-01", " 2021-01-02 10:30", ""]))
    np.testing.assert_array_equal(from_parquet, from_csv)
    assert from_csv[0] == pd.Timestamp("2021-01-01").value and np.isnan(from_csv[2])
    assert np.isnan(numbers(pd.Series(["2021-13-45"])))[0]  # not a date: missing
    assert not MODALITIES.get("text").recognises([f"2021-03-{1 + i % 28:02d} {i % 24}:00" for i in range(100)])


def test_a_named_column_is_always_tabular():
    assert column_kind(pd.Series(["x1", "x2", "x3"]), strict=False) == "categorical"


def test_ids_are_never_features():
    assert id_like("id", pd.Series([5, 1, 9]))
    assert id_like("house_id", pd.Series([5, 5, 9]))
    assert id_like("n", pd.Series([3, 1, 2, 4]))                        # consecutive whole numbers, one per row
    assert id_like("Unnamed: 0", pd.Series([7, 1, 2, 40]))              # pandas' saved index, rows filtered out
    assert id_like("No", pd.Series([5, 1, 9]))
    assert id_like("name", pd.Series(["ann", "bob", "cid"]))             # strings, one per row
    assert not id_like("area", pd.Series([1200, 3400, 980, 1500]))     # unique, but not consecutive
    assert not id_like("rooms", pd.Series([3, 3, 4]))


def test_tabular_takes_the_leftover_columns():
    """Numbers and few distinct strings go to tabular; ids, the label, the split, the images
    and free text never do."""
    df = pd.DataFrame({
        "id": range(12), "kitchen": [f"p/{i}.jpg" for i in range(12)], "front": [f"f/{i}.png" for i in range(12)],
        "notes": [f"a long description of house {i}" for i in range(12)],
        "area": np.linspace(50, 300, 12), "brand": ["acme", "zeta"] * 6, "split": ["train"] * 12,
        "price": np.arange(12) * 1000.5,
    })
    roles = resolve_columns(df, Path("m.csv"), ["image", "text", "tabular"], flag={"label": ["price"]})
    assert roles == {"image": ["kitchen", "front"], "text": ["notes"], "tabular": ["area", "brand"],
                     "label": ["price"], "split": ["split"]}


def test_declared_columns_join_and_the_rest_is_still_inferred():
    df = pd.DataFrame({"zipcode": [85255, 36372, 85255, 36372], "area": [1.5, 2.5, 3.5, 1.0],
                       "category": ["a", "b", "a", "b"], "label": ["x", "y", "x", "y"]})
    roles = resolve_columns(df, Path("m.csv"), ["tabular"], declared={"tabular": ["category"]})
    assert roles["tabular"] == ["category", "zipcode", "area"] and roles["label"] == ["label"]
    # --columns names exactly the tabular columns: nothing is inferred
    roles = resolve_columns(df, Path("m.csv"), ["tabular"], flag={"tabular": ["area"]})
    assert roles["tabular"] == ["area"]


def test_fit_and_encode_missing_values_and_unseen_categories():
    train = pd.DataFrame({"area": [1.0, 2.0, None, 3.0], "zip": [85255, 36372, 85255.0, None],
                          "brand": ["acme", "acme", "zeta", ""]})
    prep = prep_for(["area"], ["zip", "brand"])
    state = TAB.fit(train, prep)
    assert state["numeric"]["area"] == {"mean": 2.0, "std": pytest.approx(np.std([1.0, 2.0, 3.0])), "log": False,
                                        "floor": 0.0, "decimal": ".", "unit": ""}
    assert state["categorical"] == {"zip": ["85255", "36372"], "brand": ["acme", "zeta"]}
    new = pd.DataFrame({"area": [2.0, None, "n/a"], "zip": ["85255", 99999, None], "brand": ["zeta", "brandnew", None]})
    x = TAB.encode(new, prep, state)
    assert x.dtype == np.float32 and x.shape == (3, 2 + 2) == (3, *TAB.shape(prep))
    assert x[:, 0].tolist() == [0.0, 0.0, 0.0] and x[:, 1].tolist() == [0.0, 1.0, 1.0]  # missing: 0 and flagged
    assert x[:, 2].tolist() == [2, UNKNOWN, 0]            # "85255" is 85255: known; 99999 unseen; missing
    assert x[:, 3].tolist() == [3, UNKNOWN, 0]
    info = TAB.info(prep, state)
    assert info.extra == {"numeric": 1, "cardinalities": [4, 4], "columns": ["area", "zip", "brand"]}


def test_choose_sorts_columns_and_says_why():
    sample = pd.DataFrame({"area": [1.5, 2.5], "rooms": [1, 2], "city": ["x", "y"]})
    prep, chosen = TAB.choose({**TAB.Prep().model_dump(), "categorical": ["area"]}, sample, cuda=False)
    assert (prep["numeric"], prep["categorical"]) == ([], ["area", "rooms", "city"])  # declared wins; few ints
    assert [c.key for c in chosen] == ["tabular.categorical"]


def test_a_right_skewed_positive_column_is_standardised_on_the_log_scale():
    """Areas and prices: a few large values would squeeze the others together near -0.3."""
    areas = np.array([900, 1000, 1100, 1200, 1300, 1500, 1800, 2500, 4000, 9000], dtype=float)
    prep = prep_for(["area", "score"], [])
    train = pd.DataFrame({"area": areas, "score": np.linspace(-1, 1, 10)})
    state = TAB.fit(train, prep)
    assert state["numeric"]["area"]["log"] and not state["numeric"]["score"]["log"]  # symmetric, reaches below 0
    z = TAB.encode(train, prep, state)[:, 0]
    assert z.mean() == pytest.approx(0, abs=1e-5) and z.std() == pytest.approx(1, abs=1e-4)
    raw = (areas - areas.mean()) / areas.std()
    assert np.median(z) > np.median(raw) + 0.05  # the typical rows spread out instead of sitting near one value
    # at predict time a value at or below 0 is raised to the training minimum, a missing one stays missing
    x = TAB.encode(pd.DataFrame({"area": [0.0, -5, None], "score": [0, 0, 0]}), prep, state)
    assert x[0, 0] == x[1, 0] == pytest.approx(z.min()) and x[2, 0] == 0 and x[2, 2] == 1


def test_whole_numbers_in_a_column_named_like_a_code_are_categories():
    sample = pd.DataFrame({"zipcode": [85255, 36372, 92880, 85266, 93446], "store_id": [3, 17, 21, 5, 8],
                           "area": [1200, 3400, 980, 1500, 2200], "price_code": [1.5, 2.5, 1.5, 3.5, 2.0]})
    prep, chosen = TAB.choose(TAB.Prep().model_dump(), sample, cuda=False)
    assert prep["numeric"] == ["area", "price_code"]  # not whole numbers: a measurement whatever its name
    assert prep["categorical"] == ["zipcode", "store_id"]
    assert any(c.value == ["zipcode", "store_id"] and "named like a code" in c.why for c in chosen)


def test_a_column_cannot_be_both_kinds():
    with pytest.raises(ValueError, match="either numeric or categorical"):
        TAB.Prep(numeric=["a"], categorical=["a"])


def _info() -> ModalityInfo:
    return ModalityInfo("tabular", extra={"numeric": 2, "cardinalities": [5, 3], "columns": ["a", "b", "c", "d"]})


def _batch(n: int = 6) -> torch.Tensor:
    x = torch.randn(n, 6)
    x[:, 2:4] = (torch.rand(n, 2) < 0.3).float()
    x[:, 4] = torch.randint(0, 5, (n,)).float()
    x[:, 5] = torch.randint(0, 3, (n,)).float()
    return x


@pytest.mark.parametrize("name", ENCODERS["tabular"].names())
def test_tabular_encoders_give_pooled_vectors_tokens_and_gradients(name):
    enc = ENCODERS["tabular"].get(name)(_info())
    x = _batch()
    out = enc(x)
    toks, pad = enc.tokens(x)
    assert out.shape == (6, enc.out_dim) and toks.shape[0] == 6 and toks.shape[2] == enc.out_dim and pad is None
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_the_feature_tokenizer_gives_one_token_per_column_and_a_cls():
    enc = ENCODERS["tabular"].get("ft_transformer")(_info(), dim=16, heads=4, layers=1)
    assert enc.tokens(_batch())[0].shape == (6, 1 + 4, 16)


# ---------------------------------------------------------------- a manifest, end to end


def _png(path: Path, value: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)
    return str(path.relative_to(path.parent.parent))


def _manifest(root: Path, n: int = 48) -> Path:
    """Images + tabular fields with missing numbers and categories; the label follows the fields."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        y = i % 2
        rows.append({
            "id": i, "photo": _png(root / "img" / f"{i}.png", int(rng.integers(0, 255))),
            "area": None if i % 7 == 3 else float(rng.normal(2.0 if y else -2.0, 0.3)),
            "brand": "" if i % 11 == 5 else f"b{int(rng.integers(0, 4))}", "rooms": int(rng.integers(1, 3)),
            "label": ["cheap", "dear"][y],
        })
    path = root / "m.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _space(tmp_path: Path) -> object:
    raw = yaml.safe_load((SPACES_DIR / "image_tabular.yaml").read_text())
    raw["fusion"]["choices"] = {"mid": {"dim": 16}, "attention": {"heads": 2, "dim": 16}, "early": {"dim": 16}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_space(space=path)


def _config(encoder: str, fusion: str) -> TrialConfig:
    flat = {"encoder.image": "small_cnn", "encoder.image.small_cnn.width": 8, "encoder.tabular": encoder,
            "fusion.type": fusion, "fusion.weights": "fixed", "head.hidden": 16, "head.dropout": 0.0,
            "loss.type": "cross_entropy", "optimizer.type": "adam", "optimizer.lr": 1e-2, "train.batch_size": 8,
            "train.epochs": 2}
    return TrialConfig.from_flat(flat, ["image", "tabular"])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("tab")
    return prepare_data(_manifest(root), _space(root), home=root / "home")


def test_prepared_tabular_input(prepared):
    meta = prepared.meta
    assert [(i["name"], i["columns"]) for i in meta.inputs] == [("image", ["photo"]),
                                                               ("tabular", ["area", "brand", "rooms"])]
    assert meta.prep["tabular"]["numeric"] == ["area"] and meta.prep["tabular"]["categorical"] == ["brand", "rooms"]
    assert prepared.arrays["tabular"].shape == (48, 2 + 2)
    train = prepared.split == TRAIN
    assert np.allclose(prepared.arrays["tabular"][train & (prepared.arrays["tabular"][:, 1] == 0), 0].mean(), 0,
                       atol=1e-5)  # standardised on the training split
    assert prepared.present["tabular"].all()


@pytest.mark.parametrize("encoder, fusion", [("mlp", "mid"), ("ft_transformer", "attention"),
                                             ("ft_transformer", "early")])
def test_trains_logs_and_predicts_with_missing_values_and_unseen_categories(prepared, encoder, fusion):
    """Trains; the model's metadata goes through JSON (as in the logged model); raw request
    rows with a missing number, an empty and an unseen category give the same inputs as
    training and a prediction."""
    torch.manual_seed(0)
    tc = _config(encoder, fusion)
    model = build_model(tc, prepared.meta)
    history = fit(model, prepared, tc, device=torch.device("cpu"))
    assert len(history) == 2 and np.isfinite(history[-1]["val_loss"])
    meta = DataMeta.from_json(prepared.meta.to_json())  # what the logged model carries
    assert meta.states["tabular"] == prepared.meta.states["tabular"]
    assert expected_columns(meta) == ["image", "area", "brand", "rooms"]
    root = Path(prepared.meta.manifest).parent
    raw = pd.read_csv(prepared.meta.manifest).iloc[:3].reset_index(drop=True)
    request = pd.DataFrame({"image": [str(root / p) for p in raw["photo"]], "area": raw["area"],
                            "brand": raw["brand"], "rooms": raw["rooms"]})
    inputs, present = model_inputs(request, meta, {"image": None, "tabular": None}, {})
    assert np.array_equal(inputs["tabular"].numpy(), prepared.arrays["tabular"][:3])
    request.loc[0, "brand"], request.loc[1, "area"], request.loc[2, "rooms"] = "never-seen", None, 7
    inputs, present = model_inputs(request, meta, {"image": None, "tabular": None}, {})
    x = inputs["tabular"].numpy()
    assert x[0, 2] == UNKNOWN and (x[1, 0], x[1, 1]) == (0.0, 1.0) and x[2, 3] == UNKNOWN
    model.eval()
    with torch.no_grad():
        out = model(inputs, present)
    assert out.shape == (3, 2) and torch.isfinite(out).all()


def test_regression_outputs_are_on_the_targets_scale(tmp_path):
    """A price-like target: the model predicts standardised targets and maps them back, so its
    outputs, loss and metrics (MAE, RMSE, R2) are in the targets' unit."""
    path = _manifest(tmp_path)
    df = pd.read_csv(path)
    df["price"] = 300_000 + 100_000 * df["area"].fillna(0) + np.arange(len(df)) * 1000.0
    df.drop(columns="label").to_csv(path, index=False)
    raw = yaml.safe_load((SPACES_DIR / "image_tabular.yaml").read_text())
    raw.update(loss={"choices": {"mse": {}}}, search={"metric": "val_rmse", "mode": "min"})
    raw["data"]["columns"] = {"label": "price"}
    raw["fusion"]["choices"] = {"mid": {"dim": 16}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(raw))
    data = prepare_data(path, load_space(space=tmp_path / "space.yaml"), home=tmp_path / "home")
    assert data.meta.target == "regression"
    y = data.targets[data.split == TRAIN]
    assert data.meta.target_scale == {"mean": pytest.approx(float(y.mean())), "std": pytest.approx(float(y.std())),
                                      "log": False}  # not skewed: on its own scale (test_log_target.py)
    tc = TrialConfig.from_flat(_flat_regression(), ["image", "tabular"])
    model = build_model(tc, data.meta).eval()
    with torch.no_grad():
        out = model({k: torch.from_numpy(np.asarray(v[:4])) for k, v in data.arrays.items()})
    assert out.abs().mean() > 1e4  # an untrained model already predicts near the mean price
    metrics = evaluate(model, data, data.indices(1), torch.device("cpu"), prefix="val")
    assert {"val_rmse", "val_mae", "val_r2"} <= set(metrics)


def _flat_regression() -> dict:
    return {"encoder.image": "small_cnn", "encoder.tabular": "mlp", "fusion.type": "mid", "head.hidden": 16,
            "head.dropout": 0.0, "loss.type": "mse", "optimizer.type": "adam", "optimizer.lr": 1e-2,
            "train.batch_size": 8, "train.epochs": 1}


# ---------------------------------------------------------------- several columns of one modality


def _houses(root: Path, n: int = 24) -> Path:
    """Houses in miniature: four photos per row, rooms and an area, and a price."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        row = {room: _png(root / room / f"{i}.png", int(rng.integers(0, 255)))
               for room in ("frontal", "bedroom", "bathroom", "kitchen")}
        area = float(rng.uniform(80, 300))
        rows.append({**row, "rooms": int(rng.integers(1, 6)), "area": area, "zipcode": int(rng.choice([85255, 36372])),
                     "price": round(1500.0 * area + float(rng.normal(0, 20000)), 2)})
    path = root / "houses.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("share", [True, False])
def test_four_image_columns_train_through_one_shared_encoder_or_one_each(tmp_path, share):
    raw = yaml.safe_load((SPACES_DIR / "image_tabular.yaml").read_text())
    raw["encoders"]["image"]["share_weights"] = share
    raw["modalities"]["tabular"] = {"categorical": ["zipcode"]}
    raw.update(loss={"choices": {"mse": {}}}, search={"metric": "val_rmse", "mode": "min"})
    raw["data"]["columns"] = {"label": "price"}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(raw))
    space = load_space(space=tmp_path / "space.yaml")
    data = prepare_data(_houses(tmp_path), space, home=tmp_path / "home")
    assert [i["name"] for i in data.meta.inputs] == ["frontal", "bedroom", "bathroom", "kitchen", "tabular"]
    assert data.meta.prep["tabular"]["categorical"] == ["zipcode"] and data.meta.target == "regression"
    flat = {**_flat_regression(), "encoder.image.small_cnn.width": 8, "encoder.image.share_weights": share,
            "fusion.type": "attention", "fusion.attention.dim": 16, "fusion.attention.heads": 2}
    tc = TrialConfig.from_flat(flat, space.modalities)
    assert tc.separate_encoders == (() if share else ("image",))
    model = build_model(tc, data.meta)
    assert sorted(model.encoders) == (["image", "tabular"] if share else
                                      ["image:bathroom", "image:bedroom", "image:frontal", "image:kitchen", "tabular"])
    history = fit(model, data, tc, device=torch.device("cpu"))
    assert {"val_rmse", "val_mae", "val_r2"} <= set(history[-1]) and np.isfinite(history[-1]["val_rmse"])

"""Searches over pretrained encoders (a tiny BERT and timm's test_vit, made here) with real Ray
Tune, Optuna and MLflow: one trial per training strategy, the feature cache built by the first
search and reused by the second, the whole model logged and served after a restart with the
weights gone, and missing weights stopping a search before any run exists."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
import yaml

from autofusion import tracking
from autofusion.cli.tables import cache_line
from autofusion.errors import ConfigError
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from autofusion.spaces.load import SPACES_DIR
from tests.helpers import new_store
from tests.tiny_models import tiny_bert, tiny_timm

pytestmark = pytest.mark.slow
os.environ["HF_HUB_OFFLINE"] = "1"
STRATEGIES = ("frozen", "staged", "finetune")


def write_space(path, text_model: str, vit: str):
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["encoders"] = {"text": {"choices": {"hf_text": {"model": text_model, "max_tokens": 8}}},
                       "image": {"choices": {"timm": {"model": "test_vit", "checkpoint": vit, "max_tokens": 4}}}}
    raw["fusion"] = {"choices": {"mid": {"dim": 16}, "attention": {"dim": 16, "heads": 2}}}
    raw["train"].update(strategy={"type": "categorical", "choices": list(STRATEGIES)}, frozen_epochs=1)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_local, store_template):
    root = tmp_path_factory.mktemp("pretrained")
    space = write_space(root / "space.yaml", str(tiny_bert(root / "bert")), str(tiny_timm(root / "vit.pth")))
    uri = new_store(root / "mlruns", store_template)
    opts = SearchOptions(space=str(space), num_trials=3, max_epochs=2, concurrency=2, seed=0, tracking_uri=uri,
                         home=str(root / "home"), demo_samples=48, quiet=True, scheduler="fifo",
                         enqueue=tuple({"train.strategy": s, "fusion.type": "mid"} for s in STRATEGIES))
    first = run_search(opts)
    second = run_search(SearchOptions(**{**opts.__dict__, "num_trials": 1, "enqueue": ()}))
    return first, second, uri, root


def test_each_strategy_is_a_trial_and_logs_what_the_model_used(searched):
    first, _, uri, _ = searched
    assert {t.config["train.strategy"] for t in first.trials} == set(STRATEGIES)
    assert all(t.status == "finished" and t.best_value is not None for t in first.trials)
    c = tracking.client(uri)
    for t in first.trials:
        run = c.get_run(t.run_id)
        assert run.data.params["train.strategy"] == t.config["train.strategy"]
        used = json.loads(run.data.tags["autofusion.pretrained.text"])
        assert used["tokenizer"] == "BertTokenizer" and used["max_length"] == 64 and used["weights"].startswith("bert@")
        assert json.loads(run.data.tags["autofusion.pretrained.image"])["size"] == 160
    frozen = next(t for t in first.trials if t.config["train.strategy"] == "frozen")
    finetune = next(t for t in first.trials if t.config["train.strategy"] == "finetune")
    assert frozen.num_params < finetune.num_params  # the frozen trial holds no backbone


def test_the_first_search_builds_the_feature_caches_and_the_second_reuses_them(searched):
    first, second, uri, _ = searched
    c = tracking.client(uri)
    tags = [c.get_run(r.parent_run_id).data.tags for r in (first, second)]
    for key in ("autofusion.feature_cache.text.hf_text", "autofusion.feature_cache.image.timm"):
        assert (tags[0][key], tags[1][key]) == ("built", "reused")
    assert sorted(second.data_summary["feature caches"].split(", ")) == ["image.timm reused", "text.hf_text reused"]
    said = [cache_line(r) for r in (first, second)]  # the summary's line
    assert said[0].endswith("later searches on this data reuse it") and "the features phase took" in said[0]
    assert said[1].endswith("(computed by an earlier search)")
    params = c.get_run(first.parent_run_id).data.params
    assert any(k.startswith("pretrained.hf_text-") and k.endswith(".max_length") for k in params)


def test_the_logged_model_predicts_raw_inputs_after_a_restart_without_the_weights(searched, tmp_path):
    first, _, uri, root = searched
    manifest = next((root / "home" / "demo").rglob("manifest.csv"))
    rows = pd.read_csv(manifest).head(4)
    frame = pd.DataFrame({"image": [str(manifest.parent / p) for p in rows["image"]], "text": rows["text"]})
    tracking.client(uri)
    here = mlflow.pyfunc.load_model(first.model_uri).predict(frame)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    shutil.move(root / "bert", tmp_path / "gone-bert")  # the pretrained weights are not there any more
    shutil.move(root / "vit.pth", tmp_path / "gone-vit.pth")
    code = ("import mlflow, pandas as pd, sys; mlflow.set_tracking_uri(sys.argv[1]); "
            "m = mlflow.pyfunc.load_model(sys.argv[2]); "
            "print(m.predict(pd.read_csv(sys.argv[3])).to_json(orient='split'))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub"),
           "TORCH_HOME": str(tmp_path / "empty-torch")}
    out = subprocess.run([sys.executable, "-c", code, uri, first.model_uri, str(tmp_path / "rows.csv")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    there = pd.read_json(io.StringIO(out.stdout.strip().splitlines()[-1]), orient="split")
    assert list(there["label"]) == list(here["label"])
    pd.testing.assert_frame_equal(there.drop(columns="label"), here.drop(columns="label"), atol=1e-5,
                                  check_dtype=False)


def test_missing_weights_stop_the_search_before_any_run(tmp_path, ray_local):
    space = write_space(tmp_path / "space.yaml", "nobody/tiny-missing-bert", str(tiny_timm(tmp_path / "vit.pth")))
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    with pytest.raises(ConfigError) as err:
        run_search(SearchOptions(space=str(space), num_trials=1, max_epochs=1, tracking_uri=uri,
                                 home=str(tmp_path / "home"), demo_samples=24, quiet=True))
    msg = str(err.value)
    assert "\n" not in msg and "'nobody/tiny-missing-bert'" in msg
    assert "autofusion weights pull nobody/tiny-missing-bert" in msg
    c = tracking.client(uri)
    assert not [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]


def test_benchmark_smoke(ray_local, capsys, tmp_path, monkeypatch):
    """benchmarks/pretrained.py --smoke runs and prints its table with a figure in every cell."""
    import importlib
    import tempfile

    import torch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = torch.get_num_threads()
    try:
        importlib.import_module("benchmarks.pretrained").main(["--smoke"])
    finally:
        torch.set_num_threads(threads)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| f")]
    assert [r.split("|")[1].split()[0] for r in rows] == ["frozen", "finetune"]
    assert all(any(ch.isdigit() for ch in cell) for r in rows for cell in r.strip("|").split("|")[1:] if cell.strip() != "-")

"""A real search whose greedy ensemble is kept (the rule "beats the best trial" is forced, as a
tiny search rarely has trials to combine): the ensemble is tested once, logged as one pyfunc
model in the search's run, named in the summary and the report, and ``autofusion promote``
registers it; the registered model predicts raw inputs. The summary also says how surely the
validation split ranks the best trial."""

from __future__ import annotations

from io import StringIO

import mlflow
import pandas as pd
import pytest
from rich.console import Console

from autofusion import modelregistry, tracking
from autofusion.cli.tables import print_summary
from autofusion.search import ensemble
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from tests.helpers import new_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kept(tmp_path_factory, ray_local, store_template):
    root = tmp_path_factory.mktemp("ensemble-search")
    uri = new_store(root / "mlruns", store_template)
    opts = SearchOptions(task="image_text", num_trials=3, max_epochs=1, concurrency=3, seed=1, tracking_uri=uri,
                         home=str(root / "home"), demo_samples=96, quiet=True, sampler="random",
                         enqueue=({"fusion.type": "mid"}, {"fusion.type": "gated"}, {"fusion.type": "late"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ensemble.EnsembleChoice, "kept", property(lambda self: True))
        return run_search(opts), uri, root


def test_the_kept_ensemble_is_tested_logged_and_summarised(kept):
    result, uri, _ = kept
    e = result.ensemble
    assert e is not None and e.kept and e.model_uri and result.final_model_uri == e.model_uri
    assert "test_accuracy" in e.test_metrics and e.val_value >= e.best_val_value  # a score: higher is better
    parent = tracking.client(uri).get_run(result.parent_run_id)
    tags = parent.data.tags
    assert (tags["autofusion.model_uri"], tags["autofusion.model_run_id"]) == (e.model_uri, result.parent_run_id)
    assert tags["autofusion.best_run_id"] == result.best.run_id  # the best trial keeps its own model too
    assert parent.data.metrics["test_accuracy"] == pytest.approx(e.test_metrics["test_accuracy"])
    assert parent.data.metrics["best_trial_test_accuracy"] == pytest.approx(result.test_metrics["test_accuracy"])
    out = StringIO()
    print_summary(result, result.modalities, Console(file=out, width=400))
    text = out.getvalue()
    assert f"Ensemble (kept, the search's model): {e.members_text()}" in text
    assert f"Model: {e.model_uri} (the ensemble" in text
    page = open(result.report_path).read()
    assert e.members_text() in page and "<b>Ensemble (the search's model):</b>" in page


def test_the_summary_says_how_surely_validation_ranks_the_best_trial(kept):
    """The paired bootstrap over the trials' saved validation outputs: in the summary, the
    report and the search's run (search/noise.py; its figures are tested in test_noise.py)."""
    result, uri, _ = kept
    n, metric = result.noise, result.settings.metric
    assert n is not None and n.rows == result.data_summary["val"] and n.compared == 2
    assert n.low <= result.best.best_value <= n.high and set(n.tied) <= {t.number for t in result.trials}
    line = n.text(metric, result.best.best_value)
    out = StringIO()
    print_summary(result, result.modalities, Console(file=out, width=1000))
    assert "Validation noise: " + line in out.getvalue()
    assert "<b>Validation noise:</b>" in open(result.report_path).read()
    parent = tracking.client(uri).get_run(result.parent_run_id)
    assert parent.data.metrics[f"best_{metric}_low"] == pytest.approx(n.low)
    assert parent.data.metrics["trials_tied_with_best"] == len(n.tied)
    assert parent.data.tags["autofusion.tied_with_best"] == ",".join(map(str, n.tied))


def test_promote_registers_the_ensemble_and_it_predicts_raw_inputs(kept):
    result, uri, root = kept
    p = modelregistry.promote(uri, search=result.parent_run_id)
    assert p.moved and p.value == pytest.approx(result.ensemble.test_metrics[p.metric])
    c = tracking.client(uri)
    mv = c.get_model_version_by_alias("image_text", "champion")
    assert mv.run_id == result.parent_run_id and mv.tags["autofusion.ensemble_members"]
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/image_text@champion")
    assert len(model.unwrap_python_model().members) == len(result.ensemble.trials)
    demo = root / "home" / "demo" / "image_text-96-0"
    rows = pd.read_csv(demo / "manifest.csv").head(4)
    rows["image"] = [str(demo / p) for p in rows["image"]]
    pred = model.predict(rows[["image", "text"]])
    assert len(pred) == 4 and set(pred["label"]) <= {"alpha", "beta", "gamma", "delta"}
    probs = pred[[col for col in pred.columns if col.startswith("prob_")]].to_numpy()
    assert probs.shape == (4, 4) and abs(probs.sum(axis=1) - 1).max() < 1e-5

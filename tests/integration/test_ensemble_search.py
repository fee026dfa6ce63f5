"""A real search whose greedy ensemble is kept (the rule "beats the best trial" is forced, as a
tiny search rarely has trials to combine): the ensemble is tested once, logged as one pyfunc
model in the search's run, named in the summary and the report, and ``autofusion promote``
registers it; the registered model predicts raw inputs. The summary also says how surely the
validation split ranks the best trial, and which inputs the search's model needs; every run
says which data it saw, and the logged models how fast they answer."""

from __future__ import annotations

from io import StringIO

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from rich.console import Console

from autofusion import modelregistry, tracking
from autofusion.cli import cli
from autofusion.cli.tables import print_summary
from autofusion.modelregistry.promotion import logged_model_id
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
    assert n is not None and n.rows == result.data_summary["val"] and n.compared == len(result.trials) - 1  # + trees
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


# --- issue 29: what the search's model says about itself (datasets, importance, latency) ----------

def test_every_run_carries_its_datasets_with_the_data_fingerprint_as_digest(kept):
    """MLflow's dataset lineage (tracking/datasets.py): the search run and each trial's run."""
    result, uri, _ = kept
    c = tracking.client(uri)
    fingerprint = c.get_run(result.parent_run_id).data.params["data.fingerprint"]
    for run_id in [result.parent_run_id, *(t.run_id for t in result.trials)]:
        inputs = c.get_run(run_id).inputs.dataset_inputs
        by_context = {t.value: d.dataset for d in inputs for t in d.tags if t.key == "mlflow.data.context"}
        assert set(by_context) == {"training", "validation", "test"}, run_id
        assert {d.digest for d in by_context.values()} == {fingerprint}
        assert by_context["test"].name == "image_text-96-0-test" and "image" in by_context["test"].schema
        assert f'"num_rows": {result.data_summary["val"]}' in by_context["validation"].profile


def test_the_search_says_which_inputs_its_model_needs(kept):
    """Importance of the search's model on validation and on test, in the summary, the search
    run's metrics and the report (its figures: tests/unit/test_importance.py)."""
    result, uri, _ = kept
    val, test = result.importance, result.test_importance
    assert val is not None and test is not None
    assert sorted(i.name for i in val.inputs) == ["image", "text"] and val.rows == result.data_summary["val"]
    assert (val.metric, test.metric) == (result.settings.metric, result.settings.metric.replace("val_", "test_"))
    # the served model scores the test split as the search's own test evaluation did
    final = result.bagged if result.bagged is not None else result.ensemble
    assert test.base == pytest.approx(final.test_metrics[test.metric], abs=1e-6)
    metrics = tracking.client(uri).get_run(result.parent_run_id).data.metrics
    first = val.inputs[0]
    assert metrics[f"importance.{first.name}"] == pytest.approx(first.removal.value)
    assert metrics[f"test_importance_permutation.{first.name}.high"] == pytest.approx(
        next(i for i in test.inputs if i.name == first.name).permutation.high)
    assert metrics["importance_seconds"] > 0
    out = StringIO()
    print_summary(result, result.modalities, Console(file=out, width=1000))
    assert "Importance: " + val.text() in out.getvalue()
    page = open(result.report_path).read()
    assert "Which inputs the model needs" in page and 'alt="input importance"' in page


def test_the_logged_models_carry_their_served_latency_and_promote_copies_it(kept):
    result, uri, _ = kept
    c = tracking.client(uri)
    assert set(result.latency) == {result.model_uri, result.final_model_uri}  # the best trial's, the search's
    for model_uri, run_id in ((result.model_uri, result.best.run_id), (result.final_model_uri, result.parent_run_id)):
        lat = result.latency[model_uri]
        assert 0 < lat.p50_ms <= lat.p95_ms and lat.rows_per_s > 0 and 16 <= lat.batch <= 256
        assert c.get_logged_model(logged_model_id(model_uri)).tags["autofusion.latency_p50_ms"] == f"{lat.p50_ms:.2f}"
        assert c.get_run(run_id).data.tags["autofusion.rows_per_s"] == f"{lat.rows_per_s:.1f}"
    p = modelregistry.promote(uri, search=result.parent_run_id, name="served")
    tags = c.get_model_version("served", p.version).tags
    assert tags["autofusion.latency_p95_ms"] == f"{result.latency[result.final_model_uri].p95_ms:.2f}"
    assert tags["autofusion.tested_on"].startswith("image_text-96-0-test (digest ")
    res = CliRunner().invoke(cli, ["models", "--tracking-uri", uri])
    assert res.exit_code == 0 and "tested on" in res.output and "p50 ms" in res.output, res.output
    assert tags["autofusion.latency_p50_ms"] in res.output

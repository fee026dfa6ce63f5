"""The end-to-end search with real Ray Tune, Optuna and MLflow: two trials of one epoch on
tiny demo data, then promotion and a prediction from the registered model."""

from __future__ import annotations

import re

import mlflow
import pandas as pd
import pytest

from autofusion import modelregistry, tracking
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from tests.helpers import new_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_local, store_template):
    """One real search shared by the tests of this module."""
    root = tmp_path_factory.mktemp("e2e")
    uri = new_store(root / "mlruns", store_template)
    opts = SearchOptions(task="image_text", num_trials=2, max_epochs=1, concurrency=2, seed=0,
                         tracking_uri=uri, home=str(root / "home"), demo_samples=96, quiet=True)
    return run_search(opts), uri, root


def test_parent_and_child_runs(searched):
    result, uri, _ = searched
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("image_text")
    assert exp is not None and exp.experiment_id == result.experiment_id
    parent = c.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tracking.KIND_TAG] == "search"
    assert parent.data.params["search.num_trials"] == "2"
    assert parent.data.params["search.metric"] == "val_f1_macro"  # sees the minority class
    assert "best_val_f1_macro" in parent.data.metrics and "test_accuracy" in parent.data.metrics
    children = tracking.find_child_runs(uri, exp.experiment_id, result.parent_run_id)
    assert len(children) == 2
    for ch in children:
        p = ch.data.params
        assert p["fusion.type"] in ("early", "mid", "late", "attention", "gated", "low_rank_tensor", "film")
        assert p["encoder.image"] and p["encoder.text"] and float(p["optimizer.lr"]) > 0
        # a parameter of an unpicked fusion choice never appears
        assert not any(k.startswith("fusion.") and k.split(".")[1] not in (p["fusion.type"], "type", "weights")
                       for k in p)
        hist = c.get_metric_history(ch.info.run_id, "val_accuracy")
        assert [m.step for m in hist] == [1]
        assert 0.0 <= hist[0].value <= 1.0
        assert ch.data.tags["autofusion.status"] in ("finished", "pruned")
        assert ch.data.tags["autofusion.stop_reason"] in ("converged", "epochs", "stopped")
        assert {"val_recall_macro", "val_precision_macro"} <= set(ch.data.metrics)
        assert any(k.startswith("val_recall.") for k in ch.data.metrics)  # per class
        assert ch.data.metrics["num_params"] > 0 and ch.data.metrics["latency_ms"] > 0
    best = [ch for ch in children if ch.info.run_id == result.best.run_id][0]
    assert {"test_accuracy", "test_f1_macro", "test_recall_macro"} <= set(best.data.metrics)
    assert any(k.startswith("test_recall.") for k in best.data.metrics)  # the test split is evaluated once,
    assert sum("test_accuracy" in ch.data.metrics for ch in children) == 1  # on the best trial only
    d = result.default_trial  # the search starts from the hand-built model (Optuna's first trial)
    assert d is not None and d in result.trials
    assert (d.config["fusion.type"], d.config["optimizer.type"], d.config["optimizer.lr"]) == ("mid", "adamw", 3e-3)
    assert parent.data.tags["autofusion.default_trial"] == str(d.number)
    assert parent.data.metrics["default_val_f1_macro"] == pytest.approx(d.best_value)
    artifacts = {a.path for a in c.list_artifacts(result.parent_run_id)}
    assert {"space.yaml", "trials.csv"} <= artifacts


def test_best_chosen_on_validation(searched):
    result, _, _ = searched
    vals = [t.best_value for t in result.trials if t.best_value is not None]
    assert result.best.best_value == max(vals)


def test_promote_registers_champion_and_predicts(searched):
    result, uri, root = searched
    p = modelregistry.promote(uri, task="image_text")
    assert p.version == "1" and p.moved and p.alias == "champion"
    c = tracking.client(uri)
    mv = c.get_model_version_by_alias("image_text", "champion")
    assert str(mv.version) == "1"
    assert mv.tags["autofusion.search_run_id"] == result.parent_run_id
    assert mv.tags["autofusion.trial_run_id"] == result.best.run_id
    # a second promotion of the same search is not better: the alias stays
    p2 = modelregistry.promote(uri, search=result.parent_run_id)
    assert p2.version == "2" and not p2.moved
    assert str(c.get_model_version_by_alias("image_text", "champion").version) == "1"
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/image_text@champion")
    demo = root / "home" / "demo" / "image_text-96-0"
    rows = pd.read_csv(demo / "manifest.csv").head(4)
    rows["image"] = [str(demo / p) for p in rows["image"]]
    pred = model.predict(rows[["image", "text"]])
    assert list(pred.columns[:1]) == ["label"] and len(pred) == 4
    assert set(pred["label"]) <= {"alpha", "beta", "gamma", "delta"}
    probs = pred[[c for c in pred.columns if c.startswith("prob_")]].to_numpy()
    assert probs.shape == (4, 4) and abs(probs.sum(axis=1) - 1).max() < 1e-5


def test_the_ensemble_is_never_worse_than_the_best_trial_on_validation(searched):
    result, uri, _ = searched
    e = result.ensemble  # both trials kept their best epoch's validation outputs beside their checkpoints
    assert e is not None and e.candidates == 2 and sum(e.weights) == pytest.approx(1.0)
    metric, mode = result.settings.metric, result.settings.mode
    assert e.val_value >= e.best_val_value if mode == "max" else e.val_value <= e.best_val_value
    assert e.best_val_value == pytest.approx(result.best.best_value)  # the same outputs as the trial reported
    parent = tracking.client(uri).get_run(result.parent_run_id)
    assert parent.data.tags["autofusion.ensemble"] == ("kept" if e.kept else "not kept")
    assert parent.data.metrics[f"ensemble_{metric}"] == pytest.approx(e.val_value)


def test_the_report_is_written_beside_the_store(searched):
    result, uri, root = searched
    path = root / "mlruns" / "reports" / f"search-{result.parent_run_id}.html"
    assert result.report_path == str(path.resolve()) and path.is_file()
    page = path.read_text()
    assert "<script" not in page and not re.search(r'(?:src|href)="https?:', page)
    assert f"<b>Best trial:</b> trial {result.best.number} " in page and "<h2>Ensemble</h2>" in page
    assert "report.html" in {a.path for a in tracking.client(uri).list_artifacts(result.parent_run_id)}


def test_where_the_time_went_is_logged_with_the_search_and_printed(searched):
    """The search's phases add up to its wall time, are the search run's metrics and are one
    line of the summary."""
    import io

    from rich.console import Console

    from autofusion.cli.tables import print_summary

    result, uri, _ = searched
    ph = result.phases
    assert {"startup", "data", "features", "trials", "test", "ensemble", "logging", "shutdown"} <= set(ph)
    assert all(v >= 0 for v in ph.values()) and ph["trials"] > 0
    assert sum(ph.values()) == pytest.approx(result.wall_seconds)
    logged = tracking.client(uri).get_run(result.parent_run_id).data.metrics
    assert {k: v for k, v in logged.items() if k.startswith("phase_seconds.")} == pytest.approx(
        {f"phase_seconds.{k}": round(v, 3) for k, v in ph.items()})
    out = io.StringIO()
    print_summary(result, result.modalities, Console(file=out, width=300))
    line = next(ln for ln in out.getvalue().splitlines() if ln.startswith("Where the time went: "))
    assert f"trials {ph['trials']:.1f}s" in line and line.endswith(f"= {result.wall_seconds:.1f}s")

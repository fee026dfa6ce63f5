"""The search's plots and its one-page HTML report, from synthetic trial records (no search):
the report is self-contained (no script, no URL to fetch), names the best trial and the
ensemble, and is written beside a sqlite store and logged with the search's run."""

from __future__ import annotations

import re
from pathlib import Path

from autofusion import tracking
from autofusion.search.records import (
    EnsembleResult,
    SearchResult,
    Settings,
    TrialRecord,
)
from autofusion.tracking import artifacts, plots, report

SETTINGS = Settings(num_trials=4, max_epochs=3, concurrency=1, seed=0, sampler="tpe", scheduler="asha",
                    metric="val_accuracy", mode="max", objectives=(), time_budget=None, cpus_per_trial=1,
                    gpus_per_trial=0, grace_period=1)
PNG = b"\x89PNG\r\n\x1a\n"


def _trial(n: int, fusion: str, image: str, curve: list[float], status: str = "finished") -> TrialRecord:
    best = max(curve) if curve else None
    return TrialRecord(f"t{n}", n, {"fusion.type": fusion, "encoder.image": image, "encoder.text": "bigru",
                                    "optimizer.type": "adamw", "optimizer.lr": 3e-3},
                       status=status, history=[{"val_accuracy": v, "val_loss": 1 - v} for v in curve],
                       best_value=best, best_epoch=curve.index(best) + 1 if curve else None, planned_epochs=3,
                       num_params=12345, seconds=1.5, run_id=f"r{n}")


def _result(uri: str = "sqlite:///x/mlflow.db", parent: str = "p1", kept: bool = True) -> SearchResult:
    trials = [_trial(1, "mid", "small_cnn", [0.5, 0.7, 0.8]), _trial(2, "gated", "small_cnn", [0.6, 0.9, 0.95]),
              _trial(3, "late", "mobilenet_v3_small", [0.25], status="pruned"),
              _trial(4, "film", "small_cnn", [], status="failed")]
    trials[3].error = "RuntimeError: see http://example.com/<script>"
    ens = EnsembleResult(trials=[2, 1], run_ids=["r2", "r1"], weights=[0.75, 0.25], val_value=0.97,
                         best_val_value=0.95, kept=kept, candidates=3, rounds=25,
                         test_metrics={"test_accuracy": 0.96} if kept else {},
                         model_uri="models:/m-ens" if kept else None)
    return SearchResult(parent_run_id=parent, experiment_id="0", experiment="demo", tracking_uri=uri,
                        settings=SETTINGS, trials=trials, best=trials[1], test_metrics={"test_accuracy": 0.94},
                        model_uri="models:/m-best", wall_seconds=30.0, data_summary={"rows": 96}, ensemble=ens,
                        modalities=["image", "text"], default_trial=trials[0])


def test_the_search_plots_are_pngs_and_skip_what_cannot_be_drawn():
    result = _result()
    drawn = artifacts.search_plots(result, ["image", "text"])
    assert set(drawn) == {"metric_by_fusion", "metric_by_encoder", "learning_curves"}
    assert all(png.startswith(PNG) for png in drawn.values())
    assert plots.metric_by_choice([result.trials[3]], [("fusion.type", "f")], "val_accuracy", "max", None) is None
    assert plots.top_learning_curves([], "val_accuracy", "max") is None


def _self_contained(page: str) -> None:
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page):
        assert attr.startswith("data:image/png;base64,"), attr[:60]
    assert not re.search(r"url\(\s*['\"]?https?:", page)


def test_the_report_is_self_contained_and_names_the_best_trial_and_the_ensemble():
    result = _result()
    page = report.render(result, artifacts.search_plots(result, ["image", "text"]), ["image", "text"])
    _self_contained(page)
    assert page.count("data:image/png;base64,") == 3
    assert "Best trial:</b> trial 2 (gated fusion)" in page
    assert "trial 2 x0.75, trial 1 x0.25" in page and "models:/m-ens" in page and "kept" in page
    assert '<tr class="best">' in page and "RuntimeError: see http://example.com/&lt;script&gt;" in page
    assert "test_accuracy 0.9600" in page  # the ensemble's test evaluation
    not_kept = report.render(_result(kept=False), {}, ["image", "text"])
    assert "not kept" in not_kept and "models:/m-best" in not_kept and "models:/m-ens" not in not_kept


def test_the_report_goes_beside_the_store_and_into_the_search_run(sqlite_uri, tmp_path):
    c = tracking.client(sqlite_uri)
    parent = c.create_run(tracking.experiment_id(sqlite_uri, "demo")).info.run_id
    result = _result(sqlite_uri, parent)
    path = report.save_report(sqlite_uri, result, {}, ["image", "text"], tmp_path / "fallback")
    db = Path(sqlite_uri[len("sqlite:///"):])
    assert path == (db.parent / "reports" / f"search-{parent}.html").resolve() and path.is_file()
    assert "report.html" in {a.path for a in c.list_artifacts(parent)}
    assert c.get_run(parent).data.tags["autofusion.report"] == str(path)
    assert report.report_dir("http://127.0.0.1:5000", tmp_path) == tmp_path
    assert report.report_dir("file:///srv/mlruns", tmp_path) == Path("/srv/mlruns/reports")


def test_a_bagged_search_reports_its_bagged_model_and_each_configuration_out_of_fold():
    """Where the search bagged, the bagged model is the search's: the report and the summary say
    so (not the ensemble), and list every configuration bagged with its own validation value, its
    out-of-fold value and its weight, a row member by what it is."""
    import dataclasses

    from autofusion.cli.tables import bagged_line
    from autofusion.search.records import BaggedResult

    result = _result()
    row = TrialRecord("t5", 5, {"linear.inputs": "text", "linear.C": 0.1}, status="finished", best_value=0.9,
                      run_id="r5", kind="linear")
    g = BaggedResult(folds=5, rows=72, trials=[2, 5], run_ids=["r2", "r5"], weights=[0.6, 0.4],
                     oof_metrics={"val_accuracy": 0.93}, test_metrics={"test_accuracy": 0.97},
                     model_uri="models:/m-bag", oof_values={5: 0.91, 2: 0.9, 1: 0.8})
    result = dataclasses.replace(result, trials=[*result.trials, row], bagged=g)
    page = report.render(result, {}, ["image", "text"])
    _self_contained(page)
    assert "Bagged (the search's model):</b> trial 2 x0.60, trial 5 x0.40" in page
    assert "Ensemble (kept; its members are bagged below)" in page and "Ensemble (the search" not in page
    cell = r"<td[^>]*>"
    assert re.search(rf"{cell}5</td>{cell}linear on text</td>.*?{cell}0\.9000</td>{cell}0\.9100</td>{cell}0\.40</td>", page)
    assert re.search(rf"{cell}1</td>{cell}mid fusion</td>.*?{cell}0\.8000</td>{cell}0\.00</td>", page)
    assert "test_accuracy 0.9700" in page  # the bagged model's one test evaluation
    line = bagged_line(result)
    assert line.endswith("Each configuration bagged, out of fold (val_accuracy, weight): "
                         "trial 5 0.9100 x0.4, trial 2 0.9000 x0.6, trial 1 0.8000 x0")
    assert "Not bagged" in report.render(_result(), {}, ["image", "text"])

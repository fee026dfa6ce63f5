"""A search against a real ``mlflow server`` (sqlite backend, proxied artifacts): the run
tree, the logged model, promotion and loading through the server; and a tracking server
that cannot be reached stops the CLI at once with one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import mlflow
import pandas as pd
import pytest

from autofusion import modelregistry, tracking
from autofusion.metrics import metric_names
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from autofusion.search.runs import read_trials
from autofusion.search.table import trial_rows
from tests import procs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_template):
    """``mlflow server`` on a free local port; killed (its process group) when the module ends."""
    root = tmp_path_factory.mktemp("server")
    shutil.copy(store_template, root / "db.sqlite")  # migrated already: the server starts sooner
    port = procs.free_port()
    log = root / "server.log"
    proc = procs.start(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],  # the default four take half a minute to start on two cores
        log, env={"MLFLOW_DISABLE_TELEMETRY": "true"}, cwd=root,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        procs.wait_http(url + "/health", proc, log, timeout=120)
        yield url, root
    finally:
        procs.stop(proc, grace=0)  # its store is thrown away


@pytest.fixture(scope="module")
def searched(server, tmp_path_factory, ray_local):
    """Two trials of two epochs, two at once, tracked through the server."""
    url, _ = server
    home = tmp_path_factory.mktemp("server-home")
    opts = SearchOptions(task="image_text", num_trials=2, max_epochs=2, concurrency=2, cpus_per_trial=1, seed=0,
                         demo_samples=64, tracking_uri=url, home=str(home), quiet=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        return run_search(opts), url, home


def test_run_tree_through_the_server(searched):
    result, url, _ = searched
    assert result.tracking_errors == []
    assert result.settings.concurrency == 2
    c = tracking.client(url)
    parent = c.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tracking.KIND_TAG] == "search"
    assert parent.data.params["search.concurrency"] == "2"
    assert parent.data.tags["autofusion.best_run_id"] == result.best.run_id
    assert "test_accuracy" in parent.data.metrics and parent.data.metrics["trials_failed"] == 0
    children = tracking.find_child_runs(url, result.experiment_id, result.parent_run_id)
    assert len(children) == 2
    assert {ch.info.run_id for ch in children} == {t.run_id for t in result.trials}
    for ch in children:
        assert ch.info.status == "FINISHED"
        assert ch.data.tags[tracking.PARENT_TAG] == result.parent_run_id
        p = ch.data.params
        assert {"fusion.type", "fusion.weights", "encoder.image", "encoder.text", "optimizer.type", "optimizer.lr",
                "train.batch_size", "train.epochs"} <= set(p)
        epochs = int(ch.data.tags["autofusion.epochs_run"])
        assert epochs == 2  # no scheduler, and patience 3 never ends 2 epochs: nothing is pruned
        for name in metric_names("classification"):
            hist = c.get_metric_history(ch.info.run_id, name)
            assert sorted(m.step for m in hist) == [1, 2], name
        assert ch.data.metrics["num_params"] > 0 and "best_val_f1_macro" in ch.data.metrics
    artifacts = {a.path for a in c.list_artifacts(result.parent_run_id)}
    assert {"space.yaml", "trials.csv", "data"} <= artifacts
    # the trials view reads the same tree back through the server
    rows = trial_rows(read_trials(url, parent), parent.data.params["search.metric"],
                      best_run_id=parent.data.tags["autofusion.best_run_id"])
    assert sorted(r["run_id"] for r in rows) == sorted(t.run_id for t in result.trials)
    assert [r["best"] for r in sorted(rows, key=lambda r: r["run_id"] != result.best.run_id)] == [True, False]
    assert all(r["epochs"] == 2 and r["val_f1_macro"] is not None for r in rows)


def test_model_logged_on_best_child_only(searched, server):
    result, url, _ = searched
    _, root = server
    c = tracking.client(url)
    models = c.search_logged_models(experiment_ids=[result.experiment_id])
    kept = result.ensemble is not None and result.ensemble.kept  # the ensemble is logged in the search's run
    assert len(models) == (2 if kept else 1)
    if kept:
        ens = [m for m in models if m.source_run_id == result.parent_run_id]
        assert len(ens) == 1 and ens[0].name == "ensemble"
    lm = next(m for m in models if m.source_run_id != result.parent_run_id)
    assert lm.source_run_id == result.best.run_id and lm.name == "model"
    assert result.model_uri == f"models:/{lm.model_id}"
    assert lm.artifact_location.startswith("mlflow-artifacts:")  # proxied by the server
    assert list((root / "artifacts").rglob("MLmodel")), "the model's files are not under --artifacts-destination"
    best = c.get_run(result.best.run_id)
    assert best.data.tags["autofusion.best"] == "true" and "test_accuracy" in best.data.metrics
    assert {"plots", "confusion_matrix.json"} <= {a.path for a in c.list_artifacts(result.best.run_id)}


def test_promote_and_load_champion_through_the_server(searched):
    result, url, home = searched
    p = modelregistry.promote(url, task="image_text")
    assert (p.version, p.moved, p.previous) == ("1", True, None)
    c = tracking.client(url)
    mv = c.get_model_version_by_alias("image_text", "champion")
    kept = result.ensemble is not None and result.ensemble.kept  # then the ensemble is the search's model
    assert str(mv.version) == "1" and mv.run_id == (result.parent_run_id if kept else result.best.run_id)
    assert mv.tags["autofusion.search_run_id"] == result.parent_run_id
    mlflow.set_tracking_uri(url)
    model = mlflow.pyfunc.load_model("models:/image_text@champion")
    demo = home / "demo" / "image_text-64-0"
    rows = pd.read_csv(demo / "manifest.csv").head(5)
    rows["image"] = [str(demo / f) for f in rows["image"]]
    pred = model.predict(rows[["image", "text"]])
    assert len(pred) == 5 and set(pred["label"]) <= set(pd.read_csv(demo / "manifest.csv")["label"])
    probs = pred[[k for k in pred.columns if k.startswith("prob_")]].to_numpy()
    assert probs.shape == (5, 4) and abs(probs.sum(axis=1) - 1).max() < 1e-5


def test_unreachable_tracking_server_exits_2_with_one_line(tmp_path):
    uri = f"http://127.0.0.1:{procs.free_port()}"  # released: nothing listens there
    t0 = time.time()
    run = subprocess.run([sys.executable, "-m", "autofusion", "search", "--tracking-uri", uri, "--demo-samples", "48",
                          "--quiet"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    elapsed = time.time() - t0
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and uri in lines[0], run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert not (tmp_path / ".autofusion" / "demo").exists()  # stopped before any work

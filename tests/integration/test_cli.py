"""The CLI: one real subprocess run of the installed entry point (search, promote, predict),
and bad input that stops before anything is written to MLflow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autofusion import tracking
from autofusion.cli import cli
from tests.helpers import new_store

pytestmark = pytest.mark.slow


def _entry() -> list[str]:
    exe = shutil.which("autofusion") or str(Path(sys.executable).parent / "autofusion")
    return [exe]


def test_installed_entry_point_search_promote_predict(tmp_path, store_template):
    uri = new_store(tmp_path / "mlruns", store_template)
    run = subprocess.run(
        [*_entry(), "search", "--task", "image_text", "--num-trials", "1", "--max-epochs", "1",
         "--demo-samples", "64", "--tracking-uri", uri, "--quiet"],
        capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # the product's defaults: the trees member is the second trial, the linear members (every
    # input, the image alone, the text alone) the next three, and 54 rows bag 5 folds
    assert "5 trials · image_text" in run.stdout, run.stdout
    assert run.stdout.count(" linear ") >= 3 and " lightgbm " in run.stdout, run.stdout
    assert "Best: trial" in run.stdout and "autofusion promote --search" in run.stdout
    assert "Hand-built default (trial 1, mid fusion): val_f1_macro=" in run.stdout
    assert "Bagged (the search's model): 5 folds of the 54 training and validation rows" in run.stdout
    # every configuration bagged, with its own out-of-fold value: in the summary, on its trial's
    # run and in bagging.json on the search's run
    assert "Each configuration bagged, out of fold (val_f1_macro, weight): trial " in run.stdout
    c = tracking.client(uri)
    search = next(r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])
                  if "autofusion.bagged" in r.data.tags)
    bagging = c.download_artifacts(search.info.run_id, "bagging.json", str(tmp_path))
    import json

    members = json.loads(Path(bagging).read_text())["members"]
    assert len(members) >= 4 and abs(sum(m["weight"] for m in members) - 1) < 1e-6  # the net + the row members
    for m in members:
        assert c.get_run(m["run_id"]).data.metrics["oof_val_f1_macro"] == pytest.approx(m["oof_val_f1_macro"])
    assert "<h2>Bagging</h2>" in Path(search.data.tags["autofusion.report"]).read_text()
    assert "Traceback" not in run.stderr
    res = CliRunner().invoke(cli, ["promote", "--task", "image_text", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert "alias 'champion' -> version 1" in res.output
    demo = tmp_path / ".autofusion" / "demo" / "image_text-64-0" / "manifest.csv"
    out = tmp_path / "preds.csv"
    res = CliRunner().invoke(cli, ["predict", "--model", "models:/image_text@champion", "--data", str(demo),
                                   "--output", str(out), "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    preds = pd.read_csv(out)
    assert len(preds) == 64 and {"predicted_label", "prob_alpha"} <= set(preds.columns)
    res = CliRunner().invoke(cli, ["trials", "--task", "image_text", "--tracking-uri", uri])
    assert res.exit_code == 0 and "val_f1_macro" in res.output
    header = next(ln for ln in res.output.splitlines() if "trial" in ln and "status" in ln)
    assert "oof_val_f1_macro" in header  # the bagged configurations' out-of-fold values beside the validation's
    oof = {f"{m['oof_val_f1_macro']:.4g}" for m in members}
    assert sum(any(v in ln for v in oof) for ln in res.output.splitlines()) >= len(members), res.output


@pytest.mark.parametrize("args,message", [
    (["--data", "missing.csv"], "missing.csv' does not exist"),
    (["--task", "nope"], "unknown task 'nope'; known: audio_video, image_audio, image_tabular, image_text, text_audio"),
    (["--metric", "val_bogus"], "unknown metric 'val_bogus'"),
])
def test_bad_input_one_line_exit_2_nothing_in_mlflow(tmp_path, args, message):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    res = CliRunner().invoke(cli, ["search", "--tracking-uri", uri, "--demo-samples", "48", "--quiet", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
    c = tracking.client(uri)
    runs = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]
    assert runs == []

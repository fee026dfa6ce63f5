"""Interrupted searches: SIGTERM (graceful, like Ctrl-C) and SIGKILL of the driver, then
``--resume``: finished trials are kept and not rerun, no duplicate MLflow runs, and the
final count equals --num-trials. Failing and diverging trials end as failed while the
search goes on."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autofusion import tracking
from autofusion.search import SearchOptions, run_search

pytestmark = pytest.mark.slow


def _start(tmp_path: Path, uri: str, trials: int) -> subprocess.Popen:
    exe = shutil.which("autofusion") or str(Path(sys.executable).parent / "autofusion")
    env = {**os.environ, "AUTOFUSION_HOME": str(tmp_path / ".autofusion")}
    return subprocess.Popen(
        [exe, "search", "--task", "image_text", "--num-trials", str(trials), "--max-epochs", "1",
         "--concurrency", "1", "--demo-samples", "48", "--tracking-uri", uri, "--quiet"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_finished_trial(uri: str, proc: subprocess.Popen, timeout: float = 300) -> str:
    """Polls MLflow until one trial run has finished; returns the search's parent run id."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(1)
        try:
            c = tracking.client(uri)
            exp = c.get_experiment_by_name("image_text")
            if exp is None:
                continue
            done = c.search_runs([exp.experiment_id],
                                 "attributes.status = 'FINISHED' and tags.`autofusion.kind` = 'trial'")
            if done:
                return done[0].data.tags["mlflow.parentRunId"]
        except Exception:  # noqa: BLE001 - the store may not exist yet
            continue
    raise AssertionError("no trial finished in time")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_interrupted_search_resumes_without_duplicates(tmp_path, ray_local, sig):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    proc = _start(tmp_path, uri, trials=3)
    parent = _wait_for_finished_trial(uri, proc)
    c = tracking.client(uri)
    exp_id = c.get_run(parent).info.experiment_id
    first = {r.info.run_id for r in tracking.find_child_runs(uri, exp_id, parent) if r.info.status == "FINISHED"}
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, err[-2000:]
        assert f"autofusion search --resume {parent}" in err
        assert c.get_run(parent).info.status == "KILLED"
    else:
        assert proc.returncode == -signal.SIGKILL
    result = run_search(SearchOptions(resume=parent, home=str(tmp_path / ".autofusion"), quiet=True))
    assert result.parent_run_id == parent
    children = tracking.find_child_runs(uri, exp_id, parent)  # active runs only
    assert len(children) == 3
    assert sorted(int(r.data.tags["autofusion.trial_number"]) for r in children) == [1, 2, 3]
    assert first <= {r.info.run_id for r in children}  # finished trials kept, not rerun
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)
    for r in children:
        assert [m.step for m in c.get_metric_history(r.info.run_id, "val_accuracy")] == [1]
    assert c.get_run(parent).info.status == "FINISHED"
    assert len(result.trials) == 3 and result.best is not None and result.model_uri


def test_failing_and_diverging_trials_are_failed_and_the_search_goes_on(tmp_path, ray_local):
    space = Path(__file__).resolve().parents[2] / "search_spaces" / "image_text.yaml"
    text = space.read_text()
    text = text.replace("lr: {type: float, low: 3.0e-4, high: 1.0e-2, log: true}",
                        "lr: {type: categorical, choices: [1.0e-3, 1.0e+12]}")
    text = text.replace("        depth: 3\n", "        depth: {type: categorical, choices: [3, 12]}\n")
    text = text.replace("  grad_clip: 5.0", "  grad_clip: 0.0")
    my_space = tmp_path / "space.yaml"
    my_space.write_text(text)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = run_search(SearchOptions(space=str(my_space), num_trials=6, max_epochs=2, concurrency=2, seed=3,
                                      sampler="random", scheduler="fifo", tracking_uri=uri, demo_samples=48,
                                      home=str(tmp_path / ".autofusion"), quiet=True))
    statuses = []
    for t in result.trials:
        deep = t.config.get("encoder.image") == "small_cnn" and t.config.get("encoder.image.small_cnn.depth") == 12
        huge = t.config["optimizer.lr"] > 1
        if deep:
            assert t.status == "failed" and "RuntimeError" in (t.error or ""), (t.config, t.error)
        elif huge:
            assert t.status == "failed" and "loss became" in (t.error or ""), (t.config, t.error)
        else:
            assert t.status in ("finished", "pruned"), (t.config, t.error)
        statuses.append(t.status)
    assert "failed" in statuses and ("finished" in statuses or "pruned" in statuses)
    c = tracking.client(uri)
    assert c.get_run(result.parent_run_id).info.status == "FINISHED"
    assert c.get_run(result.parent_run_id).data.metrics["trials_failed"] == statuses.count("failed")
    for t in result.trials:
        run = c.get_run(t.run_id)
        assert run.info.status == ("FAILED" if t.status == "failed" else "FINISHED")
        if t.status == "failed":
            assert run.data.tags["autofusion.error"] == t.error

"""Interrupted searches: SIGKILL and SIGTERM (graceful, like Ctrl-C) of the driver, each
followed by ``--resume``: finished trials are kept and not rerun, no duplicate MLflow runs, and the
final count equals --num-trials. (Failing trials: tests/reliability/test_faults.py.)"""

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
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from tests.helpers import new_store

pytestmark = pytest.mark.slow


# Trials slow enough (a CNN on 64 px images, a GRU, two epochs on 280 rows) that the search
# is still running when the test has seen one trial finish and sends its signal.
SLOW_SPACE = """
extends: image_text
modalities: {image: {size: 64}}
encoders:
  image: {choices: {pixels: null, mobilenet_v3_small: null}}
  text: {choices: {tfidf: null, embedding_bag: null, transformer: null}}
"""


TRIALS = 4  # a signal after the first finished trial, another after the second: trials are left for the end


def _start(tmp_path: Path, uri: str, trials: int = 0, resume: str | None = None) -> subprocess.Popen:
    exe = shutil.which("autofusion") or str(Path(sys.executable).parent / "autofusion")
    env = {**os.environ, "AUTOFUSION_HOME": str(tmp_path / ".autofusion")}
    if resume:  # the search's space, store and settings come from its saved state
        args = ["--resume", resume]
    else:
        space = tmp_path / "slow.yaml"
        space.write_text(SLOW_SPACE)
        args = ["--space", str(space), "--num-trials", str(trials), "--max-epochs", "2", "--concurrency", "1",
                "--demo-samples", "400", "--no-trees", "--bagging", "0", "--tracking-uri", uri]
    return subprocess.Popen([exe, "search", *args, "--quiet"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_finished_trials(uri: str, proc: subprocess.Popen, count: int, timeout: float = 300) -> str:
    """Polls MLflow until ``count`` trial runs have finished; returns the search's parent run id."""
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
            if len(done) >= count:
                return done[0].data.tags["mlflow.parentRunId"]
        except Exception:  # noqa: BLE001 - the store may not exist yet
            continue
    raise AssertionError(f"{count} trial(s) did not finish in time")


def _finished(uri: str, exp_id: str, parent: str) -> set[str]:
    return {r.info.run_id for r in tracking.find_child_runs(uri, exp_id, parent) if r.info.status == "FINISHED"}


def test_interrupted_search_resumes_without_duplicates(tmp_path, ray_local, store_template):
    """One search interrupted twice: SIGKILL of the driver (nothing runs on the way out), a
    ``--resume`` from the command line, SIGTERM of that one (graceful, like Ctrl-C), and a
    second resume to the end. One chain instead of a search per signal: each CLI search pays
    seconds of imports and Ray start-up before its first trial."""
    # the store is made here: the polling below must not migrate it alongside the search
    uri = new_store(tmp_path / "mlruns", store_template)
    proc = _start(tmp_path, uri, trials=TRIALS)
    parent = _wait_for_finished_trials(uri, proc, 1)
    c = tracking.client(uri)
    exp_id = c.get_run(parent).info.experiment_id
    first = _finished(uri, exp_id, parent)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL

    proc = _start(tmp_path, uri, resume=parent)  # a search killed outright resumes
    assert _wait_for_finished_trials(uri, proc, len(first) + 1) == parent
    second = _finished(uri, exp_id, parent)
    assert first < second  # the first finished trials kept, one more
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"autofusion search --resume {parent}" in err
    assert c.get_run(parent).info.status == "KILLED"

    result = run_search(SearchOptions(resume=parent, home=str(tmp_path / ".autofusion"), quiet=True))
    assert result.parent_run_id == parent
    children = tracking.find_child_runs(uri, exp_id, parent)  # active runs only
    assert len(children) == TRIALS
    assert sorted(int(r.data.tags["autofusion.trial_number"]) for r in children) == list(range(1, TRIALS + 1))
    assert second <= {r.info.run_id for r in children}  # finished trials kept, not rerun
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)
    for r in children:  # each epoch logged once: no trial ran twice into one run
        steps = sorted(m.step for m in c.get_metric_history(r.info.run_id, "val_accuracy"))
        assert steps == list(range(1, len(steps) + 1)) and steps, steps
    assert c.get_run(parent).info.status == "FINISHED"
    assert len(result.trials) == TRIALS and result.best is not None and result.model_uri

"""Faults during a search: two searches writing to one embedded sqlite store at once, a
tracking server that restarts mid-search, and a trial that runs out of memory. None may
lose a finished trial's run or metrics.

Covered elsewhere (tests/integration/test_resume.py): SIGTERM and SIGKILL of the driver
then ``--resume``; failing and diverging trials.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autofusion import tracking
from autofusion.metrics import metric_names
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions
from tests import procs
from tests.helpers import new_store
from tests.reliability.common import SPACES

pytestmark = pytest.mark.slow

METRICS = metric_names("classification")


def _search(tmp_path: Path, uri: str, *args: str, log: Path) -> subprocess.Popen:
    """``autofusion search`` as a subprocess of the installed entry point, output to ``log``."""
    exe = shutil.which("autofusion") or str(Path(sys.executable).parent / "autofusion")
    env = {**os.environ, "AUTOFUSION_HOME": str(tmp_path / ".autofusion")}
    with open(log, "wb") as out:  # the child keeps its own copy of the handle
        return subprocess.Popen([exe, "search", "--task", "image_text", "--demo-samples", "48", "--concurrency", "1",
                                 "--no-trees", "--bagging", "0", "--tracking-uri", uri, "--quiet", *args],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the search did not finish in {timeout:.0f}s:\n{procs.tail(log)}") from None
    assert proc.returncode == 0, procs.tail(log)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "MLflow write lost" not in text, procs.tail(log)


def _check_search(uri: str, parent, trials: int, epochs: int) -> None:
    """The search finished with ``trials`` finished child runs, each with every epoch of every metric."""
    c = tracking.client(uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics.get("trials_failed") == 0
    children = tracking.find_child_runs(uri, parent.info.experiment_id, parent.info.run_id)
    assert len(children) == trials
    assert sorted(int(r.data.tags["autofusion.trial_number"]) for r in children) == list(range(1, trials + 1))
    for r in children:
        assert r.info.status == "FINISHED" and r.data.tags["autofusion.status"] == "finished", r.data.tags
        assert int(r.data.tags["autofusion.epochs_run"]) == epochs
        assert {"fusion.type", "encoder.image", "encoder.text", "optimizer.lr"} <= set(r.data.params)
        for name in METRICS:
            steps = sorted(m.step for m in c.get_metric_history(r.info.run_id, name))
            assert steps == list(range(1, epochs + 1)), (r.info.run_id, name, steps)


def _searches(uri: str) -> list:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("image_text")
    return list(c.search_runs([exp.experiment_id], f"tags.`{tracking.KIND_TAG}` = 'search'"))


def test_two_searches_at_once_on_one_sqlite_store(tmp_path):
    """Two terminals in one folder, both starting a search on a store that does not exist yet."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    runs = [_search(tmp_path, uri, "--num-trials", "2", "--max-epochs", "1", log=log) for log in logs]
    for proc, log in zip(runs, logs):
        _finish(proc, log, timeout=400)
    parents = _searches(uri)
    assert len(parents) == 2
    for parent in parents:
        _check_search(uri, parent, trials=2, epochs=1)
        assert f"autofusion promote --search {parent.info.run_id}" in " ".join(p.read_text() for p in logs)


def _start_server(root: Path, port: int, log: Path) -> subprocess.Popen:
    proc = procs.start(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        log, env={"MLFLOW_DISABLE_TELEMETRY": "true"}, cwd=root,
    )
    procs.wait_http(f"http://127.0.0.1:{port}/health", proc, log, timeout=120)
    return proc


def _wait_for_trial_run(url: str, search: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    c = tracking.client(url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert search.poll() is None, procs.tail(log)
        exp = c.get_experiment_by_name("image_text")
        if exp is not None and c.search_runs([exp.experiment_id], f"tags.`{tracking.KIND_TAG}` = 'trial'"):
            return
        time.sleep(0.5)
    raise AssertionError(f"no trial run appeared in {timeout:.0f}s:\n{procs.tail(log)}")


def test_tracking_server_restart_mid_search_loses_nothing(tmp_path, store_template):
    """The server is killed once the first trial's run exists and started again on the same
    port and backend, so it is down for as long as a server takes to start (4-8 s measured on
    two cores); the search waits for it (MLflow's HTTP retries, then autofusion's writer retries)
    and every write arrives."""
    root = tmp_path / "server"
    root.mkdir()
    shutil.copy(store_template, root / "db.sqlite")  # migrated already: the server starts sooner
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    servers = [_start_server(root, port, tmp_path / "server-1.log")]
    log = tmp_path / "search.log"
    search = _search(tmp_path, url, "--num-trials", "2", "--max-epochs", "2", "--scheduler", "fifo", log=log)
    try:
        _wait_for_trial_run(url, search, log)
        procs.stop(servers[0], grace=0)  # SIGKILL to its process group: a crash, not a shutdown
        down = time.time()
        assert search.poll() is None, "the search ended before the server went down: nothing was tested"
        servers.append(_start_server(root, port, tmp_path / "server-2.log"))
        print(f"the tracking server was down for {time.time() - down:.1f}s")
        _finish(search, log, timeout=400)
        parents = _searches(url)
        assert len(parents) == 1
        _check_search(url, parents[0], trials=2, epochs=2)
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
        for s in servers:
            procs.stop(s, grace=0)


def test_failing_trials_fail_alone_and_the_search_goes_on(tmp_path, ray_local, store_template):
    """Three trials that cannot train, forced with enqueued configurations, next to one that
    can: one runs out of memory (a fusion layer of 2**40 units asks for 128 TiB at once, which
    the allocator refuses at once, so this is safe on a shared machine), one raises inside
    its encoder (a CNN too deep for 32 px images), one diverges (lr 1e12 makes the loss NaN).
    Each ends as failed with its own error line, in Tune's records and in MLflow; the other
    trial finishes, the search finishes and its best model is logged."""
    doc = yaml.safe_load((SPACES / "image_text.yaml").read_text())
    doc["fusion"] = {"choices": {"mid": {"dim": {"type": "categorical", "choices": [32, 2**40]}}}}
    doc["encoders"]["image"]["choices"] = {"small_cnn": {"width": 8, "depth": {"type": "categorical",
                                                                               "choices": [2, 12]}}}
    doc["encoders"]["text"]["choices"] = {"embedding_bag": {"dim": 16}}
    doc["optimizer"]["lr"] = {"type": "categorical", "choices": [1.0e-3, 1.0e12]}
    doc["train"]["grad_clip"] = 0.0
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(doc, sort_keys=False))
    ok = {"fusion.mid.dim": 32, "encoder.image.small_cnn.depth": 2, "optimizer.lr": 1.0e-3}
    cases = {"oom": {**ok, "fusion.mid.dim": 2**40}, "raises": {**ok, "encoder.image.small_cnn.depth": 12},
             "diverges": {**ok, "optimizer.lr": 1.0e12}}
    uri = new_store(tmp_path / "mlruns", store_template)
    result = run_search(SearchOptions(space=str(space), num_trials=4, max_epochs=2, concurrency=2, seed=1,
                                      scheduler="fifo", tracking_uri=uri, demo_samples=48, quiet=True,
                                      home=str(tmp_path / ".autofusion"), enqueue=(ok, *cases.values())))
    expected = {"oom": "can't allocate memory", "raises": "RuntimeError", "diverges": "loss became nan"}
    by_kind = {}
    for t in result.trials:
        kind = next((k for k, p in cases.items() if all(t.config[n] == v for n, v in p.items())), "ok")
        by_kind[kind] = t
    assert set(by_kind) == {"ok", *cases}, [t.config for t in result.trials]
    c = tracking.client(uri)
    for kind, needle in expected.items():
        t = by_kind[kind]
        assert t.status == "failed" and needle in (t.error or ""), (kind, t.error)
        run = c.get_run(t.run_id)
        assert run.info.status == "FAILED" and run.data.tags["autofusion.error"] == t.error
    assert by_kind["ok"].status == "finished" and result.best is by_kind["ok"] and result.model_uri
    parent = c.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_failed"] == 3

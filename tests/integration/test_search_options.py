"""Search options end to end: the same seed gives the same trials, a multi-objective search
gives a Pareto front, warm start seeds the sampler, and a real Ray cluster started with
``ray start --head`` on loopback runs the search through ``--address``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from autofusion import state, tracking
from autofusion.search import SearchOptions, run_search

pytestmark = pytest.mark.slow


def _opts(tmp_path: Path, **kw) -> SearchOptions:
    base = dict(task="image_text", num_trials=2, max_epochs=1, concurrency=1, demo_samples=48, quiet=True,
                tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", home=str(tmp_path / ".autofusion"))
    base.update(kw)
    return SearchOptions(**base)


def _signature(result):
    return [(t.config, [round(h["val_loss"], 5) for h in t.history]) for t in result.trials]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, ray_local):
    """One search with seed 7, shared: run again for reproducibility, and warm-started from."""
    root = tmp_path_factory.mktemp("options")
    return run_search(_opts(root, seed=7, experiment="a")), root


def test_same_seed_same_trials_and_metrics(seeded):
    a, root = seeded
    b = run_search(_opts(root, seed=7, experiment="b"))
    assert _signature(a) == _signature(b)  # another seed giving other trials: test_search_settings


def test_multi_objective_search_reports_a_pareto_front(tmp_path, ray_local):
    res = run_search(_opts(tmp_path, num_trials=3, sampler="nsga2", objectives=("num_params",), concurrency=2))
    assert res.settings.scheduler == "fifo" and res.pareto
    for t in res.pareto:  # nobody dominates a front member
        assert not any(o.best_value >= t.best_value and o.num_params <= t.num_params and
                       (o.best_value > t.best_value or o.num_params < t.num_params) for o in res.trials)
    arts = {a.path for a in tracking.client(res.tracking_uri).list_artifacts(res.parent_run_id)}
    assert "pareto_front.json" in arts


def test_warm_start_copies_the_finished_trials(seeded):
    first, root = seeded
    second = run_search(_opts(root, experiment="second", warm_start=first.parent_run_id, seed=1))
    home = root / ".autofusion"
    src = optuna.load_study(study_name=first.parent_run_id,
                            storage=state.journal_storage(state.state_dir(home, first.parent_run_id)))
    dst = optuna.load_study(study_name=second.parent_run_id,
                            storage=state.journal_storage(state.state_dir(home, second.parent_run_id)))
    done = [t for t in src.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(dst.trials) == len(done) + 2
    assert [t.params for t in dst.trials[:len(done)]] == [t.params for t in done]
    assert len(second.trials) == 2  # warm-start trials inform the sampler; they are not MLflow runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_on_a_ray_cluster_started_with_ray_start(tmp_path):
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    port = _free_port()
    # Token auth is Ray's default; the loopback test cluster opts out so the test does not depend on
    # ~/.ray/auth_token, which other local Ray instances on this machine may rewrite.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                             "--temp-dir", ray_tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        exe = shutil.which("autofusion") or str(Path(sys.executable).parent / "autofusion")
        uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
        deadline = time.time() + 120  # the head takes a few seconds to listen
        while time.time() < deadline:
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, "ray start --head exited"
            time.sleep(1)
        time.sleep(3)
        run = subprocess.run([exe, "search", "--address", f"127.0.0.1:{port}", "--num-trials", "2",
                              "--max-epochs", "1", "--concurrency", "2", "--demo-samples", "48",
                              "--tracking-uri", uri, "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=400, env={**env, "AUTOFUSION_HOME": str(tmp_path / ".autofusion")})
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Best: trial" in run.stdout
        c = tracking.client(uri)
        exp = c.get_experiment_by_name("image_text")
        assert len(c.search_runs([exp.experiment_id], "tags.`autofusion.kind` = 'trial'")) == 2
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)

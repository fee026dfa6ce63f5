"""Which Ray a search runs on, against real Ray processes: a head started with Ray's default
settings (token authentication on, since a token exists), a refused or missing token named
in one line within seconds, a stale ``ray_current_cluster`` that a plain search ignores, and
a per-trial request no node can hold stopping before any MLflow run exists; and a whole
search run on that head, as the README's cluster recipe says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autofusion import doctor, tracking
from tests import procs
from tests.raycluster import env_for, make_home, ray_head, ray_worker

pytestmark = pytest.mark.slow  # real Ray heads and CLI processes

EXE = shutil.which("autofusion") or str(Path(sys.executable).parent / "autofusion")


def _lines(run: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]


def _runs(uri: str) -> int:
    """MLflow runs in the store (0 when the store was never created)."""
    db = Path(uri[len("sqlite:///"):])
    if not db.exists():
        return 0
    import sqlite3

    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from runs").fetchone()[0]


def _search(tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    t0 = time.time()
    run = subprocess.run([EXE, "search", "--tracking-uri", uri, "--demo-samples", "40", "--num-trials", "1",
                          "--max-epochs", "1", "--no-trees", "--bagging", "0", "--quiet", *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=timeout, env={**env, "AUTOFUSION_HOME": str(tmp_path / ".autofusion")})
    return run, time.time() - t0


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """One `ray start --head --port P` with default settings and a token in its HOME."""
    with ray_head(tmp_path_factory.mktemp("head")) as h:
        yield h


def test_the_default_head_uses_token_authentication(head):
    assert "Token authentication is enabled" in head.log.read_text()  # what the cluster tests rely on


def test_search_on_a_ray_cluster_started_with_ray_start(head, tmp_path):
    """The README's recipe as written, against a head with Ray's default settings: a token in
    ~/.ray/auth_token (the head's own HOME here) turns token authentication on, and the search,
    with no RAY_AUTH_MODE of its own, sends that token."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run = subprocess.run([EXE, "search", "--address", head.address, "--num-trials", "2",
                          "--max-epochs", "1", "--concurrency", "2", "--demo-samples", "48",
                          "--no-trees", "--bagging", "0", "--tracking-uri", uri, "--quiet"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=400, env=env_for(head.home, AUTOFUSION_HOME=str(tmp_path / ".autofusion")))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Best: trial" in run.stdout
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("image_text")
    assert len(c.search_runs([exp.experiment_id], "tags.`autofusion.kind` = 'trial'")) == 2


def test_more_cpus_per_trial_than_this_machine_stops_before_the_data_is_read(tmp_path):
    """The resources are checked before the data: a manifest whose image files do not exist
    is not read (its bad rows would be the error otherwise), nothing is decoded or cached, no
    progress line comes first, and the store is not even created."""
    manifest = tmp_path / "posts.csv"
    manifest.write_text("image,text,label\nmissing-1.png,a small cat,a\nmissing-2.png,a big dog,b\n")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run = subprocess.run([EXE, "search", "--task", "image_text", "--data", str(manifest), "--cpus-per-trial", "64",
                          "--tracking-uri", uri], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=env_for(Path.home(), AUTOFUSION_HOME=str(tmp_path / ".autofusion")))
    lines = _lines(run)
    assert run.returncode == 2 and len(lines) == 1, run.stdout + run.stderr
    assert lines[0].startswith("error: --cpus-per-trial 64.0: each trial asks for 64 CPUs but the largest node "), lines[0]
    assert not (tmp_path / ".autofusion").exists()  # no decode cache, no feature cache
    assert not (tmp_path / "mlruns").exists() and _runs(uri) == 0


def test_trials_on_another_node_read_the_caches_by_path(tmp_path):
    """The README's "Caches on a cluster": a head that runs no trial (0 CPUs) and a worker node
    joined with `ray start --address`, AUTOFUSION_HOME on storage both nodes see (this
    machine's disk), and every memory-mapped cache file kept on disk (AUTOFUSION_MMAP_SHARE=0):
    the trials, all on the worker node, map the decoded images from the cache by path."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    with ray_head(tmp_path / "cluster", num_cpus=0) as h, ray_worker(h, tmp_path / "cluster"):
        run = subprocess.run([EXE, "search", "--address", h.address, "--num-trials", "2", "--max-epochs", "1",
                              "--concurrency", "2", "--demo-samples", "48", "--no-trees", "--bagging", "0",
                              "--tracking-uri", uri, "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=400,
                             env=env_for(h.home, AUTOFUSION_HOME=str(tmp_path / "shared"), AUTOFUSION_MMAP_SHARE="0"))
    assert run.returncode == 0, run.stderr[-3000:]
    c = tracking.client(uri)
    trials = c.search_runs([c.get_experiment_by_name("image_text").experiment_id], "tags.`autofusion.kind` = 'trial'")
    assert len(trials) >= 2 and all(t.info.status == "FINISHED" for t in trials)  # (a reference model may log one more)
    assert any((tmp_path / "shared" / "cache").glob("*/image.npy"))  # the decoded images the trials mapped


def test_a_wrong_token_is_named_in_one_line_within_seconds(head, tmp_path):
    run, took = _search(tmp_path, env_for(head.home, RAY_AUTH_TOKEN="not-the-token"), "--address", head.address)
    lines = _lines(run)
    assert run.returncode == 2 and len(lines) == 1, run.stdout + run.stderr
    assert lines[0].startswith(f"error: the Ray cluster at '{head.address}' refused the token from RAY_AUTH_TOKEN")
    assert "`ray get-auth-token` on its head node" in lines[0]
    assert took < 30, took
    assert _runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}") == 0


def test_a_missing_token_is_named_in_one_line_within_seconds(head, tmp_path):
    bare = make_home(tmp_path / "home", token=None)  # another machine: no ~/.ray/auth_token
    run, took = _search(tmp_path, env_for(bare), "--address", head.address)
    lines = _lines(run)
    assert run.returncode == 2 and len(lines) == 1, run.stdout + run.stderr
    assert "uses token authentication and this machine has no token" in lines[0]
    assert "set RAY_AUTH_TOKEN to it" in lines[0]
    assert took < 30, took


def test_auth_mode_disabled_against_a_token_cluster_is_named(head, tmp_path):
    run, _ = _search(tmp_path, env_for(head.home, RAY_AUTH_MODE="disabled"), "--address", head.address)
    assert run.returncode == 2 and "RAY_AUTH_MODE=disabled here" in _lines(run)[0], run.stderr


def test_the_doctor_joins_the_cluster_with_the_local_token(head, monkeypatch):
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(head.home))  # the child process that joins reads ~/.ray/auth_token
    check = next(c for c in doctor.CHECKS if c.name == "Ray cluster")
    [row] = doctor.run_checks(doctor.DoctorOptions(address=head.address), [check])
    assert row.status == doctor.OK, row
    assert "(token authentication)" in row.found and "2 CPUs" in row.found


def test_another_ray_port_of_the_head_is_named_in_seconds(head):
    """A raylet's port speaks gRPC too: the HTTP/2 probe passes, the GCS client says it is not
    the head's GCS (ray.init would try it anyway)."""
    code = ("from ray._raylet import GcsClient; from autofusion.search import cluster; import sys\n"
            f"info = next(iter(GcsClient(address='{head.address}').get_all_node_info(timeout=10).values()))\n"
            "try:\n    cluster.probe_address(f'127.0.0.1:{info.node_manager_port}')\n"
            "except Exception as exc:\n    print(exc)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=env_for(head.home, RAY_AUTH_MODE="token"))
    assert "a Ray process answers there but not the head's GCS" in run.stdout, run.stdout + run.stderr[-2000:]


def _stale_ray_tmpdir(tmp_path: Path) -> Path:
    """A Ray temp root whose ray_current_cluster names a port nothing listens on: what a
    `ray start --head --block` stopped with Ctrl-C leaves behind. RAY_TMPDIR points Ray here,
    so /tmp/ray (other people's sessions) is never touched."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="afstale", dir="/tmp"))  # short: Ray's socket paths live below it
    (root / "ray").mkdir()
    (root / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{procs.free_port()}")
    return root


def test_without_address_a_stale_recorded_cluster_is_ignored(tmp_path):
    root = _stale_ray_tmpdir(tmp_path)
    code = ("import ray; from autofusion.search.cluster import init_ray; init_ray(None, False); "
            "print(ray.get(ray.remote(lambda: 'ran').remote())); ray.shutdown()")
    try:
        t0 = time.time()
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env={**env_for(Path.home()), "RAY_TMPDIR": str(root)})
        took = time.time() - t0
        assert run.returncode == 0 and run.stdout.strip() == "ran", run.stderr[-2000:]
        assert took < 60, took
        assert any(root.glob("ray/session_*")), "the local Ray did not start under RAY_TMPDIR"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_address_auto_with_a_stale_record_fails_in_seconds(tmp_path):
    root = _stale_ray_tmpdir(tmp_path)
    stale = (root / "ray" / "ray_current_cluster").read_text()
    try:
        run, took = _search(tmp_path, {**env_for(Path.home()), "RAY_TMPDIR": str(root)}, "--address", "auto")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = _lines(run)
    assert run.returncode == 2 and len(lines) == 1, run.stdout + run.stderr
    assert f"cannot reach the Ray cluster at '{stale}'" in lines[0] and "ray start --head" in lines[0]
    assert took < 30, took


def test_a_dead_ray_address_variable_fails_in_seconds(tmp_path):
    address = f"127.0.0.1:{procs.free_port()}"
    run, took = _search(tmp_path, {**env_for(Path.home()), "RAY_ADDRESS": address})
    lines = _lines(run)
    assert run.returncode == 2 and len(lines) == 1, run.stdout + run.stderr
    assert f"cannot reach the Ray cluster at '{address}'" in lines[0] and "unset RAY_ADDRESS" in lines[0]
    assert took < 30, took


def test_more_cpus_per_trial_than_any_node_stops_in_seconds_before_any_run(tmp_path):
    """The issue's command, on a local Ray of two CPUs (with a stale recorded cluster around,
    which it must not join)."""
    root = _stale_ray_tmpdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    try:
        run, took = _search(tmp_path, {**env_for(Path.home()), "RAY_TMPDIR": str(root)}, "--task", "image_text",
                            "--cpus-per-trial", "64")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = _lines(run)
    assert run.returncode == 2 and len(lines) == 1, run.stdout + run.stderr
    assert re.match(r"error: --cpus-per-trial 64.0: each trial asks for 64 CPUs but the largest node of this Ray "
                    r"cluster has (\d+) CPUs?, so no trial could start; pass --cpus-per-trial \1 \(or less\)", lines[0]), lines[0]
    assert took < 60, took
    assert _runs(uri) == 0

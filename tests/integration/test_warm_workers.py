"""Warm trial processes on a real local Ray, in processes of their own (the tests' shared Ray
is not one this process started): Tune's trial actors start in the idle workers Ray started
before the trials, with the trial's modules already imported; and ``autofusion search``,
which starts its Ray before it reads the data, leaves no Ray behind when the data is bad."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRIALS = textwrap.dedent("""
    import json, os, sys, time
    import ray, psutil  # psutil: Ray's own copy
    from ray import tune
    from autofusion.search.raystart import RayStart
    from autofusion.search.warmworkers import plain_trial_actors

    def name(p):
        try:
            return (p.cmdline() or [""])[0]
        except psutil.Error:  # ended meanwhile
            return ""

    start = RayStart(None, False, warm=True)
    assert start.result()
    cpus = int(ray.cluster_resources()["CPU"])
    deadline = time.time() + 60
    while True:  # the idle workers Ray starts, one per CPU, once they have imported the trial
        idle = {p.pid for p in psutil.Process().children(recursive=True)  # this Ray's, not another test's
                if name(p) == "ray::IDLE"}
        if len(idle) >= cpus or time.time() > deadline:
            break
        time.sleep(0.2)

    def trial(config):
        tune.report({"pid": os.getpid(), "preloaded": "autofusion.search.trainable" in sys.modules})

    with plain_trial_actors():
        grid = tune.Tuner(trial, param_space={"x": tune.grid_search(list(range(cpus)))},
                          tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=cpus),
                          run_config=tune.RunConfig(storage_path=sys.argv[1], verbose=0)).fit()
    print(json.dumps({"idle": sorted(idle), "cpus": cpus,
                      "trials": [[r.metrics["pid"], r.metrics["preloaded"]] for r in grid]}))
    start.shutdown()
""")


def test_tunes_trial_actors_start_in_the_warm_idle_workers(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}
    run = subprocess.run([sys.executable, "-c", TRIALS, str(tmp_path / "tune")], capture_output=True, text=True,
                         timeout=180, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(out["idle"]) == out["cpus"], out  # one idle worker per CPU
    pids = {pid for pid, _ in out["trials"]}
    assert pids <= set(out["idle"]), out  # no new process: Tune's own runtime_env would have made one per actor
    assert all(preloaded for _, preloaded in out["trials"]), out  # the trial's modules, imported before it


def test_a_bad_manifest_ends_the_ray_started_before_the_data_with_the_command(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,text,label\nmissing.png,a caption,cat\nmissing2.png,another,dog\n")
    ray_tmp = Path(tempfile.mkdtemp(prefix="afr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    try:
        exe = shutil.which("autofusion") or str(Path(sys.executable).parent / "autofusion")
        env = {**os.environ, "RAY_ADDRESS": "", "RAY_TMPDIR": str(ray_tmp), "AUTOFUSION_HOME": str(tmp_path / "home")}
        run = subprocess.run([exe, "search", "--data", str(bad), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
                             capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
        assert run.returncode == 2, run.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.png" in lines[0], lines
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(ray_tmp) in _cmdline(p)]
        assert not left, [_cmdline(p) for p in left]  # Ray's processes ended with the command
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""

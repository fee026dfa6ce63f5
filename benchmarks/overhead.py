"""How much does orchestration cost? The same trial configurations run three ways, on the
demo task:

  (a) in-process with plain Optuna, one after another (no Ray);
  (b) through Ray Tune with its defaults, as a user would first write it (data captured by
      the trainable's closure, a fresh actor per trial, Tune's default loggers and output);
  (c) through autofusion, as a user runs it: ``run_search`` in a new Python process of its
      own, timed from the process's start to its exit (imports, the data and its checks, the
      features, Ray's start, the trials, the test evaluation, the ensemble, MLflow's logging,
      shutdown), with the decode cache already filled, as for a second search on the data.

For each it prints the wall time against the ideal: the sum of the in-trial time (every
epoch's training and validation, as each trial measured it) divided by the concurrency; the
fixed seconds are wall - ideal. For (c) it prints the trials phase alone too, and the phases
of the search (``phase_seconds.*``, the line its summary prints). Goals for (c), whole
command: at most 10 s over ideal at 8 trials x 2 epochs, at most 5% over it at 16 x 4.

    python benchmarks/overhead.py                 # 8 trials x 2 epochs, concurrency 2
    python benchmarks/overhead.py --trials 16 --epochs 4 --methods a,c
    python benchmarks/overhead.py --smoke         # seconds: CI runs this
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna


def sample_configs(space, n: int, epochs: int, seed: int) -> list[tuple[dict, dict]]:
    """``n`` configurations of the space: (Optuna params, full flat config) pairs, with
    ``train.epochs`` fixed so every method does the same work."""
    from autofusion.spaces import define_by_run

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    fn = define_by_run(space, epochs)
    out = []
    for _ in range(n):
        t = study.ask()
        consts = fn(t)
        out.append((dict(t.params), {**t.params, **consts, "train.epochs": epochs}))
        study.tell(t, 0.0)
    return out


def train_once(flat: dict, data, seed: int = 0) -> float:
    """Trains one configuration in this process; returns its in-trial seconds."""
    import torch

    from autofusion.models.build import build_model
    from autofusion.spaces import TrialConfig
    from autofusion.train.loop import fit

    torch.manual_seed(seed)
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    hist = fit(build_model(tc, data.meta), data, tc, device=torch.device("cpu"), seed=seed)
    return sum(h["epoch_seconds"] for h in hist)


def plain_optuna(configs: list[tuple[dict, dict]], data) -> tuple[float, float]:
    """(a) Optuna's own loop in this process, the configurations enqueued, one after another."""
    import torch

    torch.set_num_threads(1)
    study = optuna.create_study(direction="maximize")
    for params, _ in configs:
        study.enqueue_trial(params)
    flats = {i: flat for i, (_, flat) in enumerate(configs)}
    train = [0.0]

    def objective(trial: optuna.Trial) -> float:
        train[0] += train_once(flats[trial.number], data)
        return 0.0

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=len(configs))
    return time.perf_counter() - t0, train[0]


def ray_defaults(configs: list[tuple[dict, dict]], data, concurrency: int, storage: Path) -> tuple[float, float]:
    """(b) A first-try Ray Tune script: a closure over the data, Tune's defaults otherwise."""
    from ray import tune

    def trainable(config: dict) -> None:
        import torch

        torch.set_num_threads(1)
        tune.report({"train_seconds": train_once(config["flat"], data)})

    tuner = tune.Tuner(
        trainable, param_space={"flat": tune.grid_search([flat for _, flat in configs])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(storage_path=str(storage), name="ray-defaults", verbose=1),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    if grid.errors:  # a failed trial would read as 0 s of training
        raise SystemExit(f"(b) Ray Tune defaults: {len(grid.errors)} trial(s) failed: {grid.errors[0]}")
    return wall, sum(r.metrics["train_seconds"] for r in grid)


def via_autofusion(configs: list[tuple[dict, dict]], task: str, manifest: Path, concurrency: int, epochs: int,
                   home: Path, uri: str, *, in_process: bool = False) -> dict:
    """(c) ``autofusion search`` on the same configurations (enqueued), FIFO scheduling, in a
    new process (its own Ray); its wall time from the process's start to its exit, its phases,
    its in-trial seconds and its trials phase. ``in_process`` (the smoke run): in this
    process, on its Ray, from the search's start."""
    job = {"task": task, "data": str(manifest), "num_trials": len(configs), "max_epochs": epochs,
           "concurrency": concurrency, "scheduler": "fifo", "tracking_uri": uri, "home": str(home),
           "enqueue": [p for p, _ in configs], "quiet": True,
           "trees": False, "bagging": "0"}  # the same neural trials as (a) and (b), no extra members
    if in_process:
        out = _search(job)
        return {**out, "wall": sum(out["phases"].values()), "exit": 0.0}
    t0 = time.time()
    run = subprocess.run([sys.executable, __file__, "--search", json.dumps(job)], capture_output=True, text=True,
                         env={**os.environ, "RAY_ADDRESS": ""})
    wall = time.time() - t0
    if run.returncode != 0:
        raise SystemExit(f"(c) autofusion search failed:\n{run.stderr[-3000:]}")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    return {**out, "wall": wall, "exit": wall - (out["ran"] - t0) - sum(out["phases"].values())}


def _search(job: dict) -> dict:
    """(c)'s search (in its child process, which prints the result as its last line)."""
    from autofusion.phases import process_started
    from autofusion.search import raystart
    from autofusion.search.records import SearchOptions

    started = process_started() or time.time()
    known = {k: v for k, v in job.items() if k in SearchOptions.__dataclass_fields__}  # older versions: fewer
    opts = SearchOptions(**{**known, "enqueue": tuple(job["enqueue"])})
    if hasattr(raystart, "start_early"):  # as `autofusion search` does, before the driver's imports
        from autofusion.search.checks import space_search

        raystart.start_early(opts, space_search(opts.task, opts.space))
    from autofusion.search.driver import run_search

    res = run_search(opts, started=started)
    return {"phases": res.phases, "tune": res.tune_seconds, "ran": started, "in_trial": sum(t.seconds for t in res.trials)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="orchestration overhead: plain Optuna vs Ray Tune defaults vs autofusion")
    ap.add_argument("--task", default="image_text")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--samples", type=int, default=None, help="demo dataset size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="a,b,c", help="which of (a) (b) (c) to run, e.g. a,c")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--search", default=None, help=argparse.SUPPRESS)  # (c)'s child process
    a = ap.parse_args(argv)
    if a.search:
        print(json.dumps(_search(json.loads(a.search))))
        from autofusion import cli

        if hasattr(cli, "exit_now"):  # as `autofusion search` ends (older versions: the interpreter's teardown)
            cli.exit_now(0)
        return
    methods = set(a.methods.split(","))
    if a.smoke:
        a.trials, a.epochs, a.samples = 2, 1, 64
    import ray

    from autofusion import quiet_libraries
    from autofusion.data.demo import demo_manifest
    from autofusion.data.prepare import prepare_data
    from autofusion.search.features import build_features
    from autofusion.spaces import load_space

    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="afx-overhead-"))
    space = load_space(a.task)
    manifest = demo_manifest(space.task, tmp, num_samples=a.samples)
    data = prepare_data(manifest, space, home=tmp)
    build_features(data, space, home=tmp)  # TF-IDF, pixel statistics: fitted on the training rows
    configs = sample_configs(space, a.trials, a.epochs, a.seed)
    external = ray.is_initialized()  # a Ray started by the caller (the smoke test's) is used as it is
    rows = []
    if "a" in methods:
        wall, train = plain_optuna(configs, data)
        rows.append(("(a) plain Optuna, in-process, sequential", 1, wall, train))
    if "b" in methods:
        if not external:
            ray.init(num_cpus=a.concurrency, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        wall, train = ray_defaults(configs, data, a.concurrency, tmp / "ray")
        rows.append(("(b) Ray Tune defaults", a.concurrency, wall, train))
        if not external:
            ray.shutdown()  # (c) starts its own, as a user's search does
    c = None
    if "c" in methods:
        c = via_autofusion(configs, a.task, manifest, a.concurrency, a.epochs, tmp, f"sqlite:///{tmp}/mlflow.db",
                           in_process=external)
        rows.append(("(c) autofusion search, the whole command", a.concurrency, c["wall"], c["in_trial"]))
        rows.append(("(c) autofusion search, its trials phase", a.concurrency, c["tune"], c["in_trial"]))
    print(f"\noverhead benchmark: {a.trials} configurations x {a.epochs} epochs of {a.task} "
          f"({data.meta.split_counts['train']} training samples), {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    print("\n| method | concurrency | wall s | in-trial s | ideal s | fixed s (wall - ideal) | wall / ideal |\n"
          "|---|---|---|---|---|---|---|")
    for name, conc, wall, train in rows:
        ideal = train / conc
        print(f"| {name} | {conc} | {wall:.1f} | {train:.1f} | {ideal:.1f} | {wall - ideal:.1f} | "
              f"{wall / max(ideal, 1e-9):.2f}x |")
    if c is not None:
        from autofusion.phases import phase_line

        print(f"\n(c)'s phases: {phase_line(c['phases'])}, then {c['exit']:.1f}s to the process's exit")


if __name__ == "__main__":
    main()

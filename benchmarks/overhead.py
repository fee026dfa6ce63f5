"""How much does orchestration cost? The same trial configurations run three ways, in one
process tree, on the demo task:

  (a) in-process with plain Optuna, one after another (no Ray);
  (b) through Ray Tune with its defaults, as a user would first write it (data captured by
      the trainable's closure, a fresh actor per trial, Tune's default loggers and output);
  (c) through autofusion (reused actors, data put once in the object store, MLflow writes on
      a driver thread).

For each it prints the wall time of the trials phase against the ideal: the sum of the
in-trial time (every epoch's training and validation, as each trial measured it) divided by
the concurrency. What is left is orchestration: starting Ray Tune and its trial processes,
sampling, scheduling, reporting, checkpoints, logging, and cores left idle at the end. Goal
for (c): within 15% of ideal at concurrency 2, and far below (b).

    python benchmarks/overhead.py                 # 8 trials x 2 epochs, concurrency 2
    python benchmarks/overhead.py --smoke         # seconds: CI runs this
"""

from __future__ import annotations

import argparse
import logging
import os
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
                   home: Path, uri: str) -> tuple[float, float, float]:
    """(c) ``autofusion search`` on the same configurations (enqueued), FIFO scheduling."""
    from autofusion.search.driver import run_search
    from autofusion.search.records import SearchOptions

    res = run_search(SearchOptions(
        task=task, data=str(manifest), num_trials=len(configs), max_epochs=epochs, concurrency=concurrency,
        scheduler="fifo", tracking_uri=uri, home=str(home), enqueue=tuple(p for p, _ in configs), quiet=True,
    ))
    return res.tune_seconds, sum(t.seconds for t in res.trials), res.wall_seconds


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
    a = ap.parse_args(argv)
    methods = set(a.methods.split(","))
    if a.smoke:
        a.trials, a.epochs, a.samples = 2, 1, 64
    import ray

    from autofusion import quiet_libraries
    from autofusion.data.demo import demo_manifest
    from autofusion.data.prepare import prepare_data
    from autofusion.features import build_features
    from autofusion.spaces import load_space

    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="afx-overhead-"))
    space = load_space(a.task)
    manifest = demo_manifest(space.task, tmp, num_samples=a.samples)
    data = prepare_data(manifest, space, home=tmp)
    build_features(data, space, home=tmp)  # TF-IDF, pixel statistics: fitted on the training rows
    configs = sample_configs(space, a.trials, a.epochs, a.seed)
    started = not ray.is_initialized()  # a Ray started by the caller (the smoke test's) is used as it is
    if started:
        ray.init(num_cpus=a.concurrency, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    rows, total = [], float("nan")
    if "a" in methods:
        wall, train = plain_optuna(configs, data)
        rows.append(("(a) plain Optuna, in-process, sequential", 1, wall, train))
    if "b" in methods:
        wall, train = ray_defaults(configs, data, a.concurrency, tmp / "ray")
        rows.append(("(b) Ray Tune defaults", a.concurrency, wall, train))
    if "c" in methods:
        wall, train, total = via_autofusion(configs, a.task, manifest, a.concurrency, a.epochs, tmp / "home",
                                            f"sqlite:///{tmp}/mlflow.db")
        rows.append(("(c) autofusion search (trials phase)", a.concurrency, wall, train))
    if started:
        ray.shutdown()
    print(f"\noverhead benchmark: {a.trials} configurations x {a.epochs} epochs of {a.task} "
          f"({data.meta.split_counts['train']} training samples), {os.cpu_count()} CPUs; "
          f"autofusion end to end incl. data, MLflow and model logging: {total:.1f}s")
    print("\n| method | concurrency | wall s | in-trial s | ideal s | wall / ideal |\n|---|---|---|---|---|---|")
    for name, conc, wall, train in rows:
        ideal = train / conc
        print(f"| {name} | {conc} | {wall:.1f} | {train:.1f} | {ideal:.1f} | {wall / max(ideal, 1e-9):.2f}x |")


if __name__ == "__main__":
    main()

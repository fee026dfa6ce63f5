"""Does the search find better fusion than a hand-built model, and at what cost?

On each demo task (or a manifest given with --data and --space), on the held-out test split,
median over seeds, with the training compute each used:

- unimodal baselines: every encoder of each modality alone, the best on validation kept;
- fixed fusion with sensible defaults (AdamW 3e-3, batch 32, the space's first encoders):
  late (decision level), mid (concatenated features + MLP head, the common default),
  early and attention;
- random search over the same space with the same trial budget;
- autofusion's default search (TPE with the space's scheduler and early stopping, starting from the hand-built default).

    python benchmarks/quality.py                          # all demo tasks, 3 seeds
    python benchmarks/quality.py --tasks image_text --seeds 1 --methods unimodal,fixed
    python benchmarks/quality.py --smoke                  # tiny, seconds: CI runs this

Prints a markdown table that can be pasted into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from autofusion import quiet_libraries
from autofusion.data.demo import TASKS, demo_manifest
from autofusion.data.prepare import PreparedData, prepare_data
from autofusion.search.features import build_features
from autofusion.spaces import TrialConfig, load_space

FIXED_FUSIONS = ("late", "mid", "early", "attention")


def restrict(data: PreparedData, modalities: list[str]) -> PreparedData:
    """The same rows and split with only ``modalities`` (a unimodal baseline's view)."""
    keep = [d for d in data.meta.inputs if d["modality"] in modalities]
    names = {d["name"] for d in keep}
    meta = replace(data.meta, modalities=list(modalities), inputs=keep,
                   infos={m: data.meta.infos[m] for m in modalities}, prep={m: data.meta.prep[m] for m in modalities})
    return PreparedData({n: data.arrays[n] for n in names}, {n: data.present[n] for n in names},
                        data.targets, data.split, data.row_ids, meta,
                        raw={n: data.raw[n] for n in names if n in data.raw},
                        features={k: v for k, v in data.features.items() if k.split("|")[0] in names},
                        extractors=data.extractors)


def fixed_config(space, modalities: list[str], encoders: dict[str, str], fusion: str, epochs: int) -> dict:
    """A hand-built configuration: the common defaults a user would write without a search (the
    ones the search's first trial uses)."""
    from autofusion.search.handbuilt import HAND_BUILT

    flat = {**HAND_BUILT, "fusion.type": fusion, "loss.type": _default_loss(space), "train.epochs": epochs}
    for m in modalities:
        flat[f"encoder.{m}"] = encoders[m]
        for k, v in space.file.encoders[m].choices[encoders[m]].items():
            if not hasattr(v, "type"):  # constants only; distributions keep the encoder's defaults
                flat[f"encoder.{m}.{encoders[m]}.{k}"] = v
    return flat


def _default_loss(space) -> str:
    return "cross_entropy" if "cross_entropy" in space.file.loss.choices else next(iter(space.file.loss.choices))


def train_fixed(data: PreparedData, flat: dict, seed: int, metric: str) -> tuple[float, float, float]:
    """Trains one configuration; returns (best val, test at the best val epoch, seconds)."""
    import copy

    import torch

    from autofusion.models.build import build_model
    from autofusion.train.loop import evaluate, fit

    torch.manual_seed(seed)
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    model = build_model(tc, data.meta)
    best: dict = {"val": -1.0, "state": None}

    def keep(epoch: int, metrics: dict, m) -> None:
        if metrics[metric] > best["val"]:
            best["val"], best["state"] = metrics[metric], copy.deepcopy(m.state_dict())

    t0 = time.perf_counter()
    fit(model, data, tc, device=torch.device("cpu"), seed=seed, on_epoch_end=keep)
    seconds = time.perf_counter() - t0
    model.load_state_dict(best["state"])
    test = evaluate(model, data, data.indices(2), torch.device("cpu"), prefix="test")[metric.replace("val_", "test_")]
    return best["val"], test, seconds


def run_search_method(task: str | None, space_path: str | None, manifest: Path, seed: int, sampler: str,
                      trials: int, epochs: int, home: Path) -> tuple[float, float, float]:
    from autofusion.search.driver import run_search
    from autofusion.search.records import SearchOptions

    with tempfile.TemporaryDirectory() as tmp:
        opts = SearchOptions(task=task, space=space_path, data=str(manifest), num_trials=trials, max_epochs=epochs,
                             seed=seed, sampler=sampler, tracking_uri=f"sqlite:///{tmp}/mlflow.db", home=str(home),
                             quiet=True)
        res = run_search(opts)
    metric = res.settings.metric
    test = res.test_metrics.get(metric.replace("val_", "test_"), float("nan"))
    return res.best.best_value if res.best else float("nan"), test, sum(t.seconds for t in res.trials)


def bench_task(task: str | None, space_path: str | None, manifest: Path | None, seeds: list[int], methods: set[str],
               epochs: int, trials: int, samples: int | None, home: Path) -> list[dict]:
    space = load_space(task, space_path)
    mods = space.modalities
    manifest = manifest or demo_manifest(space.task, home, num_samples=samples)
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for seed in seeds:
        data = prepare_data(manifest, space, seed=seed, home=home)
        build_features(data, space, home=home)  # TF-IDF, pixel statistics: fitted on the training rows
        metric = "val_accuracy" if data.meta.target == "classification" else (
            "val_f1_macro" if data.meta.target == "multilabel" else "val_r2")
        first = {m: next(iter(space.file.encoders[m].choices)) for m in mods}
        if "unimodal" in methods:
            for m in mods:
                sub = restrict(data, [m])
                results = [train_fixed(sub, fixed_config(space, [m], {m: e}, "mid", epochs), seed, metric)
                           for e in space.file.encoders[m].choices]
                best = max(results, key=lambda r: r[0])
                rows.setdefault(f"{m} only (best encoder)", []).append(
                    (best[0], best[1], sum(r[2] for r in results)))
        if "fixed" in methods:
            for fusion in FIXED_FUSIONS:
                label = f"fixed {fusion}" + (" (concat + MLP)" if fusion == "mid" else "")
                rows.setdefault(label, []).append(
                    train_fixed(data, fixed_config(space, mods, first, fusion, epochs), seed, metric))
        if "random" in methods:
            rows.setdefault(f"random search ({trials} trials)", []).append(
                run_search_method(task, space_path, manifest, seed, "random", trials, epochs, home))
        if "autofusion" in methods:
            rows.setdefault(f"autofusion default search ({trials} trials)", []).append(
                run_search_method(task, space_path, manifest, seed, "tpe", trials, epochs, home))
    out = []
    for label, vals in rows.items():
        tests = [v[1] for v in vals]
        out.append({"task": space.task, "method": label, "test": statistics.median(tests),
                    "range": (min(tests), max(tests)), "seconds": statistics.median(v[2] for v in vals)})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(sorted(TASKS)))
    ap.add_argument("--data", default=None, help="a manifest of your own (with --space or --tasks TASK)")
    ap.add_argument("--space", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (to add seeds to a table)")
    ap.add_argument("--methods", default="unimodal,fixed,random,autofusion")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--samples", type=int, default=None, help="demo samples per task")
    ap.add_argument("--smoke", action="store_true", help="tiny run that checks the script works")
    a = ap.parse_args(argv)
    quiet_libraries()
    if a.smoke:
        a.seeds, a.epochs, a.trials, a.samples = 1, 1, 2, 64
        a.tasks = a.tasks if a.tasks != ",".join(sorted(TASKS)) else "image_text"
    import torch

    torch.set_num_threads(1)
    home = Path(tempfile.mkdtemp(prefix="afx-bench-"))
    tasks = a.tasks.split(",")
    results = []
    t0 = time.time()
    for task in ([None] if a.space else tasks):
        results += bench_task(task, a.space, Path(a.data) if a.data else None, list(range(a.first_seed, a.first_seed + a.seeds)),
                              set(a.methods.split(",")), a.epochs, a.trials, a.samples, home)
    print(f"\nquality benchmark: {a.seeds} seed(s), {a.epochs} epochs, {a.trials} trials per search, "
          f"{time.time() - t0:.0f}s; test metric at the best validation epoch/trial; "
          "compute = in-trial seconds (training and validation epochs)")
    print("\n| task | method | test (median) | min-max | compute s |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['task']} | {r['method']} | {r['test']:.3f} | {r['range'][0]:.3f}-{r['range'][1]:.3f} | "
              f"{r['seconds']:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

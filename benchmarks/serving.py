"""How fast the served model answers, and what sharing backbones buys an ensemble.

On real data (``../shared/data/memes``: image + text) with real pretrained weights
(``../shared/weights``: all-MiniLM-L6-v2 for the text, EfficientNet-Lite0 for the images), it
builds the models a search over frozen pretrained encoders logs: the best single model (mid
fusion) and a greedy ensemble of three (mid, gated, attention fusion; weights 0.5, 0.3, 0.2),
every member over the same two backbones. The heads are untrained: time does not depend on
their values. Each is logged to a scratch MLflow store and loaded as it is served
(``mlflow.pyfunc.load_model``; raw rows in, image paths), then measured as a search measures
the models it logs (``autofusion/serving/latency.py``): single-row p50 / p95, and rows per
second in batches of 256 (the held-out rows repeated), as ``autofusion predict`` sends them.
The models are measured round-robin (``--reps`` rounds, each ``--singles`` one-row requests
and one batch per model, after one uncounted of each), so a shared machine whose load changes
slows them alike:

  single model               the best trial's model
  ensemble, shared           as served now: each backbone once per request, each file decoded once
  ensemble, per member       as served before: every member decodes, tokenises and runs both
                             backbones itself (the same loaded ensemble, each member given its
                             own request cache and its own copy of the backbones)

    python benchmarks/serving.py                  # memes, MiniLM + EfficientNet-Lite0 (10-20 min on 2 cores)
    python benchmarks/serving.py --smoke          # seconds: tiny models made here, the demo data
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FUSIONS = (("mid", 0.5), ("gated", 0.3), ("attention", 0.2))


def encoders(root: Path, smoke: bool) -> dict:
    """The space's encoder choices: the real weights, or tiny models saved here (``--smoke``)."""
    if smoke:
        from benchmarks.pretrained import make_models

        text, image, checkpoint = make_models(root, True, "test_vit")
        return {"text": {"hf_text": {"model": text, "max_tokens": 8}},
                "image": {"timm": {"model": image, "checkpoint": checkpoint, "max_tokens": 4}}}
    return {"text": {"hf_text": {"model": str(SHARED / "weights" / "all-MiniLM-L6-v2"), "max_length": 64}},
            "image": {"timm": {"model": "efficientnet_lite0",
                               "checkpoint": str(SHARED / "weights" / "efficientnet_lite0_in1k.pth")}}}


def prepared(root: Path, smoke: bool) -> tuple:
    """(data, encoder choices, manifest): the data prepared for a space of the two pretrained encoders."""
    import yaml

    from autofusion.data.demo import write_demo
    from autofusion.data.prepare import prepare_data
    from autofusion.search.features import build_features
    from autofusion.spaces.load import SPACES_DIR, load_space

    choices = encoders(root, smoke)
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["encoders"] = {m: {"choices": c} for m, c in choices.items()}
    raw["train"] = {**raw.get("train", {}), "strategy": "finetune"}  # no frozen-output cache to build: not timed here
    (root / "space.yaml").write_text(yaml.safe_dump(raw))
    space = load_space(space=root / "space.yaml")
    manifest = write_demo("image_text", root / "demo", num_samples=48) if smoke else SHARED / "data/memes/manifest.csv"
    data = prepare_data(manifest, space, seed=0, home=root / "home")
    build_features(data, space, home=root / "home")
    return data, choices, Path(manifest)


def logged(uri: str, data, choices: dict) -> tuple[str, str]:
    """(single model URI, ensemble URI), logged as a search logs them."""
    import torch

    from autofusion import tracking
    from autofusion.models.build import build_model
    from autofusion.serving.ensemble import Member, log_ensemble_model
    from autofusion.serving.pyfunc import log_fusion_model
    from autofusion.trial import TrialConfig

    params = {f"encoder.{m}.{n}.{k}": v for m, c in choices.items() for n, p in c.items() for k, v in p.items()}
    members = []
    for i, (fusion, weight) in enumerate(FUSIONS):
        flat = {**{f"encoder.{m}": next(iter(c)) for m, c in choices.items()}, **params, "fusion.type": fusion,
                "fusion.weights": "learned", "head.hidden": 64, "head.dropout": 0.0, "loss.type": "cross_entropy",
                "optimizer.type": "adamw", "optimizer.lr": 1e-3, "train.batch_size": 32, "train.epochs": 1,
                "train.strategy": "frozen"}
        tc = TrialConfig.from_flat(flat, ["image", "text"])
        torch.manual_seed(i)
        members.append(Member(build_model(tc, data.meta).eval(), tc, weight, i, None))
    c = tracking.client(uri)
    run = c.create_run(tracking.experiment_id(uri, "serving-benchmark")).info.run_id
    single = log_fusion_model(uri, run, members[0].model, members[0].trial_config, data)
    return single, log_ensemble_model(uri, run, members, data)


def per_member(model) -> object:
    """The loaded ensemble as it was served before shared backbones: every member with its own
    request cache (and, loaded without sharing, its own copy of each backbone)."""
    py = model.unwrap_python_model()

    def outputs(self, df, cache=None, perturb=None):
        return sum(w * m.outputs(df, {}, perturb) for m, w in zip(self.members, self.weights))

    py.outputs = types.MethodType(outputs, py)
    return model


def interleaved(models: dict, rows, reps: int, singles: int, batch: int = 256) -> dict:
    """Single-row seconds and batch seconds of every model, measured round-robin (``reps``
    rounds of ``singles`` one-row requests and one batch per model, after one uncounted of
    each), so that a machine whose load changes slows every model alike."""
    import numpy as np

    full = rows.iloc[np.arange(batch) % len(rows)].reset_index(drop=True)
    times = {name: ([], []) for name in models}
    for name, model in models.items():  # warm-up
        model.predict(rows.iloc[[0]].reset_index(drop=True))
        model.predict(full)
    for r in range(reps):
        for name, model in models.items():
            for i in range(singles):
                one = rows.iloc[[(r * singles + i) % len(rows)]].reset_index(drop=True)
                t = time.perf_counter()
                model.predict(one)
                times[name][0].append(time.perf_counter() - t)
            t = time.perf_counter()
            model.predict(full)
            times[name][1].append(time.perf_counter() - t)
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny models on 48 demo rows (CI)")
    ap.add_argument("--reps", type=int, default=4, help="rounds over the models (each: --singles rows, one batch)")
    ap.add_argument("--singles", type=int, default=5, help="one-row requests per model per round")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if str(ROOT) not in sys.path:  # run as a script: benchmarks.pretrained makes the smoke models
        sys.path.insert(0, str(ROOT))
    import mlflow
    import numpy as np
    import torch

    from autofusion import tracking
    from autofusion.data.splits import TEST
    from autofusion.serving import ensemble as ensemble_module
    from autofusion.serving.explain import split_frame

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        data, choices, manifest = prepared(root, args.smoke)
        uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
        (root / "mlruns").mkdir()
        tracking.check_store(uri)
        single_uri, ensemble_uri = logged(uri, data, choices)
        setup = time.perf_counter() - t0
        rows = split_frame(data, data.indices(TEST))
        models = {"single model": mlflow.pyfunc.load_model(single_uri),
                  "ensemble of 3, shared": mlflow.pyfunc.load_model(ensemble_uri)}
        with mock.patch.object(ensemble_module, "share_backbones", lambda models: 0):
            models["ensemble of 3, per member"] = per_member(mlflow.pyfunc.load_model(ensemble_uri))
        used = ", ".join(f"{m}: {next(iter(c))}" for m, c in choices.items())
        print(f"\n{manifest} ({len(rows)} test rows), {used}; torch threads {torch.get_num_threads()}; "
              f"set-up {setup:.0f} s\n")
        reps, singles, batch = (1, 2, 16) if args.smoke else (args.reps, args.singles, 256)
        print(f"| model | backbone copies | p50 ms (1 row) | p95 ms (1 row) | rows/s (batches of {batch}) |")
        print("|---|---|---|---|---|")
        times = interleaved(models, rows, reps, singles, batch)
        results = {}
        for name, model in models.items():
            py = model.unwrap_python_model()
            copies = len({id(e.backbone) for m in getattr(py, "members", [py])
                          for e in m.model.encoders.values() if getattr(e, "backbone", None) is not None})
            one, full = times[name]
            p50, p95 = np.percentile(np.array(one) * 1000, [50, 95])
            results[name] = (p50, batch / statistics.median(full))
            print(f"| {name} | {copies} | {p50:.0f} | {p95:.0f} | {results[name][1]:.1f} |")
        shared, before = results["ensemble of 3, shared"], results["ensemble of 3, per member"]
        probs = [models[k].predict(rows.head(8)).filter(like="prob_").to_numpy()
                 for k in ("ensemble of 3, shared", "ensemble of 3, per member")]
        print(f"\n{reps} rounds of {singles} one-row requests and one batch of {batch} per model. Sharing backbones: "
              f"single-row p50 {before[0] / shared[0]:.2f}x faster, batch throughput {shared[1] / before[1]:.2f}x; "
              f"the same predictions: {bool(np.allclose(*probs, atol=1e-5))}")


if __name__ == "__main__":
    main()

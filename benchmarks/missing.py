"""How much does a model lose when a modality is missing at prediction time, and does a
learned "missing" embedding (``train.missing: learned``) lose less than zero-filling?

For each data set, a space that allows every modality to be missing, and each arm:

- ``zero, no dropout``: today's default model (missing inputs masked, never seen in training);
- ``zero``: the same with modality dropout while training;
- ``learned``: modality dropout, and a learned embedding stands in for a missing input;

the hand-built model (concat + MLP, AdamW 3e-3, batch 32, the space's first encoders) is
trained, its best validation epoch kept, logged as the MLflow pyfunc model the search logs
(``log_fusion_model``, a sqlite store in a temporary folder), loaded back with
``mlflow.pyfunc.load_model`` and asked to predict the test rows as raw requests: complete,
then with each modality's cells left empty in every row in turn.

Data sets: the ``image_text`` demo, whose label is an XOR across the modalities (one
modality alone says nothing about it: chance is the best any model can do without the
other); its ``halves`` variant, the same rows relabelled ``2 * a + b`` (the image's size and
the text's first word group: each modality holds half the label, so the best possible
accuracy with one modality blanked is 0.5); and any manifest given with ``--data``.

    python benchmarks/missing.py                          # demo + halves, 3 seeds, 8 epochs
    python benchmarks/missing.py --data my.csv --space my.yaml --seeds 1
    python benchmarks/missing.py --smoke                  # tiny, seconds: checks the script

Prints a markdown table (median over seeds, min-max in brackets) for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autofusion import quiet_libraries

ARMS: dict[str, dict[str, Any]] = {  # label -> the train.* settings that differ
    "zero, no dropout": {"train.missing": "zero", "train.modality_dropout": 0.0},
    "zero": {"train.missing": "zero"},
    "learned": {"train.missing": "learned"},
}


def halves_manifest(manifest: Path, seed: int) -> Path:
    """The demo's rows relabelled ``2 * a + b`` (image size, text word group), beside it."""
    from autofusion.data.demo import CLASS_NAMES, _latents

    df = pd.read_csv(manifest)
    a, b = _latents(len(df), seed)[:, :2].T  # row i of a demo manifest is sample i
    out = manifest.with_name("halves.csv")
    df.assign(label=[CLASS_NAMES[2 * x + y] for x, y in zip(a, b)]).to_csv(out, index=False)
    return out


def allowing_missing(space: Any) -> Any:
    """``space`` with every modality allowed to be missing (``data.allow_missing``)."""
    f = space.file
    data = f.data.model_copy(update={"allow_missing": list(f.modalities)})
    return replace(space, file=f.model_copy(update={"data": data}))


def hand_built(space: Any, epochs: int, dropout: float, arm: dict[str, Any]) -> dict[str, Any]:
    """The search's hand-built trial (``HAND_BUILT``) on the space's first encoders, with ``arm``."""
    from autofusion.search.handbuilt import HAND_BUILT

    f = space.file
    loss = "cross_entropy" if "cross_entropy" in f.loss.choices else next(iter(f.loss.choices))
    flat = {**HAND_BUILT, "fusion.type": "mid", "loss.type": loss, "train.epochs": epochs,
            "train.modality_dropout": dropout, "train.grad_clip": 5.0, "train.amp": True}
    for m in space.modalities:
        enc = next(iter(f.encoders[m].choices))
        flat[f"encoder.{m}"] = enc
        for k, v in f.encoders[m].choices[enc].items():
            if not hasattr(v, "type"):  # constants; distributions keep the encoder's defaults
                flat[f"encoder.{m}.{enc}.{k}"] = v
    return {**flat, **arm}


def train(data: Any, flat: dict[str, Any], seed: int) -> tuple[Any, Any]:
    """Trains ``flat``; returns (model at its best validation epoch, trial config)."""
    import torch

    from autofusion.metrics import DEFAULT_METRIC
    from autofusion.models.build import build_model
    from autofusion.train.loop import fit
    from autofusion.trial import TrialConfig

    metric, mode = DEFAULT_METRIC[data.meta.target]
    torch.manual_seed(seed)
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    model = build_model(tc, data.meta)
    best: dict[str, Any] = {"value": None, "state": None}

    def keep(epoch: int, metrics: dict[str, float], m: Any) -> None:
        v = metrics[metric]
        if best["value"] is None or (v > best["value"] if mode == "max" else v < best["value"]):
            best["value"], best["state"] = v, copy.deepcopy(m.state_dict())

    fit(model, data, tc, device=torch.device("cpu"), seed=seed, on_epoch_end=keep)
    model.load_state_dict(best["state"])
    return model.eval(), tc


def blanked(frame: pd.DataFrame, meta: Any, modality: str | None) -> pd.DataFrame:
    """The request rows with every cell of ``modality``'s inputs empty (None: unchanged)."""
    out = frame.copy()
    for spec in meta.input_specs:
        if spec.modality != modality:
            continue
        cols = [spec.name] if spec.name in out.columns else [c for c in spec.columns if c in out.columns]
        for c in cols:
            out[c] = None if out[c].dtype != object or modality == "tabular" else ""
    return out


def score(pred: pd.DataFrame, data: Any, idx: np.ndarray) -> float:
    """Test accuracy (classification) or RMSE (regression) of the served predictions."""
    y = data.targets[idx]
    if data.meta.target == "classification":
        return float(np.mean(np.asarray(pred["label"]) == np.asarray(data.meta.classes)[y]))
    if data.meta.target == "regression":
        return float(np.sqrt(np.mean((pred["prediction"].to_numpy() - y[:, 0]) ** 2)))
    raise SystemExit("multi-label targets are not measured here")


def measure(name: str, manifest: Path, space: Any, seeds: list[int], epochs: int, dropout: float,
            home: Path, store: str) -> list[dict[str, Any]]:
    """One data set: per arm and seed, the served model's test score complete and per blanked modality."""
    import mlflow

    from autofusion import tracking
    from autofusion.data.prepare import prepare_data
    from autofusion.data.splits import TEST
    from autofusion.search.features import build_features
    from autofusion.serving.pyfunc import input_example, log_fusion_model

    space = allowing_missing(space)
    results: dict[str, dict[str, list[float]]] = {arm: {} for arm in ARMS}
    for seed in seeds:
        data = prepare_data(manifest, space, seed=seed, home=home)
        build_features(data, space, home=home)  # TF-IDF and the like, fitted on the training rows
        idx = data.indices(TEST)
        frame = input_example(data, rows=len(idx))  # the test rows as raw requests (files as base64)
        conditions = [None, *data.meta.modalities]
        for arm, settings in ARMS.items():
            model, tc = train(data, hand_built(space, epochs, dropout, settings), seed)
            run_id = tracking.client(store).create_run(tracking.experiment_id(store, "missing")).info.run_id
            served = mlflow.pyfunc.load_model(log_fusion_model(store, run_id, model, tc, data))
            for cond in conditions:
                pred = served.predict(blanked(frame, data.meta, cond))
                results[arm].setdefault(cond or "all", []).append(score(pred, data, idx))
            print(f"{name}, seed {seed}, {arm}: " + ", ".join(f"{c}={v[-1]:.3f}" for c, v in results[arm].items()),
                  file=sys.stderr, flush=True)
    metric = "accuracy" if data.meta.target == "classification" else "rmse"
    return [{"data": name, "arm": arm if "dropout" in arm else f"{arm}, dropout {dropout}", "metric": metric,
             "scores": scores} for arm, scores in results.items()]


def cell(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.3f}" if len(values) == 1 else f"{med:.3f} ({min(values):.3f}-{max(values):.3f})"


def table(rows: list[dict[str, Any]]) -> str:
    """One markdown table per data set: arms as rows, conditions as columns."""
    out = []
    for name in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == name]
        conds = list(mine[0]["scores"])
        heads = ["all inputs", *(f"{c} blanked" for c in conds[1:])]
        out.append(f"\n{name} (test {mine[0]['metric']}, median over seeds, min-max)\n")
        out.append("| missing | " + " | ".join(heads) + " |")
        out.append("|---|" + "---|" * len(heads))
        out += [f"| {r['arm']} | " + " | ".join(cell(r["scores"][c]) for c in conds) + " |" for r in mine]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="image_text", help="demo task (with --data: the space it uses)")
    ap.add_argument("--data", default=None, help="a manifest of your own")
    ap.add_argument("--space", default=None, help="a space file for --data")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--dropout", type=float, default=0.3, help="modality dropout of the dropout arms")
    ap.add_argument("--samples", type=int, default=None, help="demo samples")
    ap.add_argument("--smoke", action="store_true", help="tiny run that checks the script works")
    a = ap.parse_args(argv)
    quiet_libraries()
    if a.smoke:
        a.seeds, a.epochs, a.samples = 1, 1, 48
    import torch

    from autofusion.data.demo import demo_manifest
    from autofusion.spaces import load_space

    torch.set_num_threads(1 if a.smoke else max(1, torch.get_num_threads()))
    scratch = Path(tempfile.mkdtemp(prefix="afx-missing-"))
    store = f"sqlite:///{scratch / 'mlflow.db'}"
    space = load_space(None if a.space else a.task, a.space)
    seeds = list(range(a.seeds))
    t0 = time.time()
    if a.data:
        path = Path(a.data).resolve()
        sets = [(f"{path.parent.name}/{path.name}", path)]
    else:
        demo = demo_manifest(space.task, scratch, num_samples=a.samples)
        sets = [(f"{space.task} (XOR)", demo), (f"{space.task} halves", halves_manifest(demo, 0))]
    rows = []
    for name, manifest in sets:
        rows += measure(name, manifest, space, seeds, a.epochs, a.dropout, scratch / "home", store)
    print(f"\nmissing-modality benchmark: {a.seeds} seed(s), {a.epochs} epochs, hand-built model (mid fusion), "
          f"modality dropout {a.dropout} in the dropout arms, served through the logged pyfunc model; "
          f"{time.time() - t0:.0f}s")
    print(table(rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

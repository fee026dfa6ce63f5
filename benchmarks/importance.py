"""How long a logged model's input importance takes (``autofusion/serving/importance.py``), as
a search computes it after its trials and ``autofusion explain`` on demand: one intact pass,
then a removal and a permutation pass per input and per field, through one request cache.

It loads the model as served (``mlflow.pyfunc.load_model``: raw rows in), takes a manifest's
rows of one split (or all), and prints the seconds, the passes and how many times each
pretrained backbone ran (forward hooks on its first layer), so that two versions of the code
can be compared on the same model: run it from each version's checkout (``git archive REV``)
with ``PYTHONPATH`` set to it.

    python benchmarks/importance.py --tracking-uri sqlite:///STORE --model models:/m-... \\
        --data ../shared/data/imdb/manifest.csv --split test --metric roc_auc
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python benchmarks/importance.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--model", required=True, help="a models:/ URI")
    ap.add_argument("--data", required=True, help="a labelled manifest")
    ap.add_argument("--split", default="test", help="rows of this split column's value ('all': every row)")
    ap.add_argument("--metric", default=None, help="default: the model's target kind's search metric")
    ap.add_argument("--rows", type=int, default=None, help="at most this many rows (the first ones)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from autofusion.data.reading import read_manifest
    from autofusion.metrics import DEFAULT_METRIC
    from autofusion.serving.explain import labels
    from autofusion.serving.importance import input_importance, targets
    from autofusion.serving.predict import load_model, request_frame
    from autofusion.serving.shared_backbones import pretrained_encoders

    t0 = time.perf_counter()
    py = load_model(a.tracking_uri, a.model).unwrap_python_model()
    loaded = time.perf_counter() - t0
    manifest = Path(a.data).resolve()
    df = read_manifest(manifest)
    if a.split != "all":
        df = df[df["split"] == a.split]
    df = df.iloc[: a.rows].reset_index(drop=True) if a.rows else df.reset_index(drop=True)
    frame = request_frame(df, manifest, py.meta, {})
    y, keep = labels(df, py.meta, {}, manifest)
    metric = a.metric or DEFAULT_METRIC[py.meta.target][0].removeprefix("val_")
    runs: dict[int, int] = {}
    for m in getattr(py, "members", [py]):
        for enc in pretrained_encoders(m.model).values() if hasattr(m, "model") else ():
            if id(enc.backbone) not in runs:
                runs[id(enc.backbone)] = 0
                enc.backbone.register_forward_hook(lambda *_, k=id(enc.backbone): runs.__setitem__(k, runs[k] + 1))
    t0 = time.perf_counter()
    imp = input_importance(py, frame.iloc[keep].reset_index(drop=True), y[keep], metric, split=a.split)
    seconds = time.perf_counter() - t0
    passes = 1 + 2 * len(targets(py.meta))
    print(f"model {a.model}: {len(getattr(py, 'members', [py]))} member(s), loaded in {loaded:.1f}s")
    print(f"importance on {len(keep)} {a.split} rows ({metric}): {seconds:.1f}s for {passes} passes; "
          f"backbone forward calls (batches): {sorted(runs.values()) or 'no pretrained backbone'}")
    for row in imp.inputs[:5]:
        print(f"  {row.name}: removal {row.removal.value:+.4f}, permutation {row.permutation.value:+.4f}")


if __name__ == "__main__":
    main()

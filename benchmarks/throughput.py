"""Training throughput inside a trial, memory per trial, and what decoding once saves.

1. Samples per second of ``autofusion.train.fit`` (what every trial runs: batches sliced
   from the cached uint8/int32 arrays) against a bare PyTorch loop on the same model,
   optimizer and loss over tensors pre-loaded in memory. Goal: at least 0.9x.
2. Peak resident memory of a process that runs one trial, and its data arrays' size.
3. Decode once: a user-like dataset (full-size JPEG photos, resized to the space's image
   size) prepared twice: the first time decodes every file, the second memory-maps the
   cache. Then two searches on it: time from the command's start to the first trial.

    python benchmarks/throughput.py            # 1600 demo samples, 3 epochs, 2000 photos
    python benchmarks/throughput.py --smoke    # seconds: CI runs this
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _config(modalities: list[str], fusion: str) -> dict:
    first = {"image": "small_cnn", "text": "embedding_bag", "audio": "mel_cnn", "video": "frame_gru"}
    return {**{f"encoder.{m}": first[m] for m in modalities}, "fusion.type": fusion, "fusion.weights": "fixed",
            "head.hidden": 128, "head.dropout": 0.1, "loss.type": "cross_entropy", "optimizer.type": "adamw",
            "optimizer.lr": 3e-3, "optimizer.weight_decay": 1e-4, "train.batch_size": 32, "train.epochs": 1}


def fit_throughput(data, flat: dict, epochs: int) -> float:
    """Samples per second of autofusion's ``fit`` (mean over epochs after the first)."""
    import torch

    from autofusion.models.build import build_model
    from autofusion.spaces import TrialConfig
    from autofusion.train.loop import fit

    torch.manual_seed(0)
    tc = TrialConfig.from_flat({**flat, "train.epochs": epochs}, data.meta.modalities)
    model = build_model(tc, data.meta)
    hist = fit(model, data, tc, device=torch.device("cpu"))
    return float(np.mean([h["train_samples_per_second"] for h in hist[1:] or hist]))


def bare_throughput(data, flat: dict, epochs: int) -> float:
    """A bare PyTorch loop: pre-loaded tensors, randperm batches, the same model/optimizer/loss."""
    import torch
    import torch.nn.functional as F

    from autofusion.models.build import build_model
    from autofusion.spaces import TrialConfig

    torch.manual_seed(0)
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    model = build_model(tc, data.meta).train()
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    idx = data.indices(0)
    xs = {m: torch.from_numpy(np.ascontiguousarray(a[idx])) for m, a in data.arrays.items()}
    y = torch.from_numpy(data.targets[idx])
    rates = []
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        t0 = time.perf_counter()
        for s in range(0, len(y), tc.batch_size):
            b = perm[s:s + tc.batch_size]
            if len(b) < 2:
                continue
            loss = F.cross_entropy(model({m: x[b] for m, x in xs.items()}), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:  # as fit does: with no clipping set, no gradient norms are computed
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
        rates.append(len(y) / (time.perf_counter() - t0))
    return float(np.mean(rates[1:] or rates))


def _trial_in_child(args: tuple) -> tuple[float, float]:
    """Runs one trial in a fresh process; returns (peak RSS MB, data MB)."""
    manifest, task, home, epochs = args
    import torch

    from autofusion.data.prepare import prepare_data
    from autofusion.spaces import load_space

    torch.set_num_threads(1)
    space = load_space(task)
    data = prepare_data(manifest, space, home=Path(home))
    fit_throughput(data, _config(space.modalities, "mid"), epochs)
    data_mb = sum(a.nbytes for a in data.arrays.values()) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, data_mb


def write_photos(src_manifest: Path, out: Path, n: int, size: int = 384) -> Path:
    """A user-like copy of the image_text demo: photos upscaled to ``size`` px JPEGs."""
    import pandas as pd
    from PIL import Image

    df = pd.read_csv(src_manifest)
    df = pd.concat([df] * (n // len(df) + 1), ignore_index=True).head(n)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rel in enumerate(df["image"]):
        p = out / "photos" / f"{i:05d}.jpg"
        with Image.open(src_manifest.parent / rel) as im:
            im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(p, quality=90)
        paths.append(f"photos/{p.name}")
    df["image"] = paths
    df.to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv"


def decode_once(manifest: Path, task: str, home: Path) -> dict[str, float]:
    """prepare_data cold vs warm, and two 1-trial searches' time to first trial."""
    import ray

    from autofusion.data.prepare import prepare_data
    from autofusion.search.driver import run_search
    from autofusion.search.records import SearchOptions
    from autofusion.spaces import load_space

    space = load_space(task)
    out: dict[str, float] = {}
    for label in ("first", "second"):
        t0 = time.perf_counter()
        prepare_data(manifest, space, home=home / "prep")
        out[f"prepare {label}"] = time.perf_counter() - t0
    started = not ray.is_initialized()  # Ray is up before both searches: its start is in neither figure
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        for label in ("first", "second"):
            res = run_search(SearchOptions(task=task, data=str(manifest), num_trials=1, max_epochs=1,
                                           tracking_uri=f"sqlite:///{home}/mlflow.db", home=str(home / "search"),
                                           quiet=True))
            out[f"search {label}: to first trial"] = res.first_trial_seconds or float("nan")
    finally:
        if started:
            ray.shutdown()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="trial throughput vs a bare PyTorch loop; memory; decode once")
    ap.add_argument("--task", default="image_text")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    if a.smoke:
        a.epochs, a.samples, a.photos = 2, 64, 48
    import torch

    from autofusion import quiet_libraries
    from autofusion.data.demo import demo_manifest
    from autofusion.data.prepare import prepare_data
    from autofusion.spaces import load_space

    quiet_libraries()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="afx-throughput-"))
    space = load_space(a.task)
    manifest = demo_manifest(space.task, tmp, num_samples=a.samples)
    data = prepare_data(manifest, space, home=tmp)
    print(f"\nthroughput benchmark: {a.task}, {data.meta.split_counts['train']} training samples, "
          f"{a.epochs} epochs, 1 thread, CPU")
    print("\n| model | autofusion fit samples/s | bare PyTorch loop samples/s | ratio |\n|---|---|---|---|")
    for fusion in ("mid", "attention"):
        flat = _config(space.modalities, fusion)
        bare = bare_throughput(data, flat, a.epochs)
        ours = fit_throughput(data, flat, a.epochs)
        print(f"| small_cnn + embedding_bag, {fusion} fusion | {ours:.0f} | {bare:.0f} | {ours / bare:.2f}x |")
    with mp.get_context("spawn").Pool(1) as pool:
        peak, data_mb = pool.apply(_trial_in_child, ((manifest, a.task, str(tmp), a.epochs),))
    print(f"\npeak resident memory of a process running one trial: {peak:.0f} MB (its arrays: {data_mb:.1f} MB)")
    if a.task == "image_text":
        photos = write_photos(manifest, tmp / "photos-data", a.photos)
        d = decode_once(photos, a.task, tmp / "decode")
        print(f"\ndecode once ({a.photos} JPEG photos of 384x384 resized to "
              f"{space.prep['image'].size}px):\n\n| step | first (decodes) | second (cache) | speed-up |\n|---|---|---|---|")
        for step in ("prepare", "search"):
            k1 = next(k for k in d if k.startswith(step) and "first" in k)
            k2 = next(k for k in d if k.startswith(step) and "second" in k)
            name = "prepare_data" if step == "prepare" else "search: start to first trial"
            print(f"| {name} | {d[k1]:.1f}s | {d[k2]:.1f}s | {d[k1] / max(d[k2], 1e-9):.1f}x |")


if __name__ == "__main__":
    main()

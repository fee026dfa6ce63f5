"""How the data stages grow with rows: the image+text demo grown to 10k, 50k and 100k rows that
share files (row i repeats sample i % files, text included: ``data.demo.write_shared_demo``),
with frozen real pretrained encoders (EfficientNet-Lite0 at 224 px, all-MiniLM-L6-v2; from
``/work/shared/weights``, or ``--weights``). Goal: time linear in distinct files, peak
memory flat in rows beyond what a trial must hold.

Each case runs in a fresh process (its peak memory is its own), timing:

  decode     ``prepare_data`` on a cold cache (read, check, decode each distinct file once)
  features   ``build_features`` on a cold cache (each distinct image and text embedded once)
  epoch      one epoch of a fixed frozen configuration (mid fusion) over the training rows and
             its validation pass, in-process on 1 thread as a trial runs
  warm       ``prepare_data`` + ``build_features`` again (both caches hit)

the first three in wall seconds and in CPU seconds of the process (every thread's: steadier
than wall time on a shared machine), and reporting the process's peak resident memory (``ru_maxrss``: pages of memory-mapped
cache files it touched included), its peak private memory (anonymous pages, sampled every
20 ms: what it holds itself), and the bytes the prepared data takes on its way to the trials
as Ray pickles it (in the pickle stream + out of band). Libraries are imported before the
timing starts.

    python benchmarks/scale.py                          # 10k/100, 50k/500, 100k/1000, 10k/1000 rows/files
    python benchmarks/scale.py --cases 100000:1000      # one case
    python benchmarks/scale.py --smoke                  # seconds: tiny models (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT.parent / "shared" / "weights"
DEFAULT_CASES = "10000:100,50000:500,100000:1000,10000:1000"


def write_space(path: Path, text: str, image: str, checkpoint: str) -> Path:
    """image_text.yaml with the frozen pretrained pair and mid fusion only."""
    import yaml

    from autofusion.spaces.load import SPACES_DIR

    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["encoders"] = {"image": {"choices": {"timm": {"model": image, "checkpoint": checkpoint}}},
                       "text": {"choices": {"hf_text": {"model": text, "max_length": 32}}}}
    raw["fusion"] = {"choices": {"mid": {"dim": 64}}, "weights": "fixed"}
    raw["train"].update(batch_size=64, augment="none", strategy="frozen")
    path.write_text(yaml.safe_dump(raw))
    return path


class PeakPrivate:
    """The highest anonymous resident memory (``RssAnon``) seen, sampled in a thread."""

    def __init__(self, every: float = 0.02) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_anon())
            time.sleep(every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss_anon())


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def to_trials_mb(data) -> tuple[float, float]:
    """(MB in the pickle stream, MB out of band) of the prepared data, as Ray serialises it."""
    from ray import cloudpickle

    buffers: list = []
    stream = cloudpickle.dumps(data, protocol=5, buffer_callback=buffers.append)
    return len(stream) / 2**20, sum(b.raw().nbytes for b in buffers) / 2**20


@contextlib.contextmanager
def timed(out: dict, stage: str) -> Iterator[None]:
    """Puts the block's wall seconds and this process's CPU seconds (every thread's) in ``out``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    out[f"{stage}_s"], out[f"{stage}_cpu"] = time.perf_counter() - wall, time.process_time() - cpu


def epoch(space_path: Path, data) -> None:
    """One epoch (training and validation) of a fixed frozen configuration."""
    import torch
    import yaml

    from autofusion.models.build import build_model
    from autofusion.train.hooks import hooks_for
    from autofusion.train.loop import fit
    from autofusion.trial import TrialConfig

    enc = yaml.safe_load(space_path.read_text())["encoders"]
    flat = {"encoder.image": "timm", "encoder.text": "hf_text", "fusion.type": "mid", "fusion.mid.dim": 64,
            "fusion.weights": "fixed", "head.hidden": 128, "head.dropout": 0.1, "loss.type": "cross_entropy",
            "optimizer.type": "adamw", "optimizer.lr": 3e-3, "train.batch_size": 64, "train.epochs": 1,
            "train.strategy": "frozen",
            **{f"encoder.{m}.{n}.{k}": v for m, c in enc.items() for n, p in c["choices"].items() for k, v in p.items()}}
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    torch.set_num_threads(1)  # as a trial runs (the driver's stages before use every core)
    torch.manual_seed(0)
    model = build_model(tc, data.meta, layout="start")
    fit(model, data, tc, device=torch.device("cpu"), hooks=hooks_for(tc, data))


def run_case(manifest: Path, space_path: Path, home: Path) -> dict:
    """One case in this process: the stages' seconds and memory (see the module's docstring)."""
    import sklearn.model_selection  # noqa: F401 - imported before timing: the stages' own cost is measured
    import timm  # noqa: F401
    import torch  # noqa: F401 - imported before timing, as the others
    import transformers  # noqa: F401

    from autofusion.data.prepare import prepare_data
    from autofusion.search.features import build_features
    from autofusion.spaces.load import load_space

    space = load_space(space=space_path)
    out = {"rss_start_mb": _peak_rss_mb()}
    private = PeakPrivate()
    with timed(out, "decode"):
        data = prepare_data(manifest, space, seed=0, home=home)
    out["rss_decode_mb"] = _peak_rss_mb()
    with timed(out, "features"):
        build_features(data, space, home=home)
    out["rss_features_mb"] = _peak_rss_mb()
    out["in_band_mb"], out["out_of_band_mb"] = to_trials_mb(data)
    with timed(out, "epoch"):
        epoch(space_path, data)
    out["rss_epoch_mb"], out["private_mb"] = _peak_rss_mb(), private.stop() / 2**20
    t0 = time.perf_counter()
    again = prepare_data(manifest, space, seed=0, home=home)
    build_features(again, space, home=home)
    out["warm_s"] = time.perf_counter() - t0
    out["rows"], out["train_rows"] = len(data.row_ids), int(data.meta.split_counts.get("train", 0))
    out["files"], out["texts"] = data.arrays["image"].distinct, data.arrays["text"].distinct
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=DEFAULT_CASES, help="ROWS:FILES,... (rows, and the distinct files they share)")
    p.add_argument("--weights", default=str(WEIGHTS), help="folder of all-MiniLM-L6-v2/ and efficientnet_lite0_in1k.pth")
    p.add_argument("--workdir", default=None, help="keep manifests and caches here (default: a temp folder)")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--one", nargs=3, metavar=("MANIFEST", "SPACE", "HOME"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        print(json.dumps(run_case(*(Path(a) for a in args.one))))
        return
    from autofusion.data.demo import write_shared_demo

    root = Path(args.workdir or tempfile.mkdtemp(prefix="af-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        if str(ROOT) not in sys.path:  # run as a script
            sys.path.insert(0, str(ROOT))
        from benchmarks.pretrained import make_models

        args.cases = "200:4,400:4"
        text, image, ckpt = make_models(root, True, "test_vit")
    else:
        weights = Path(args.weights)
        text, image, ckpt = str(weights / "all-MiniLM-L6-v2"), "efficientnet_lite0", str(weights / "efficientnet_lite0_in1k.pth")
    space = write_space(root / "space.yaml", text, image, ckpt)
    results = []
    for case in args.cases.split(","):
        rows, files = (int(v) for v in case.split(":"))
        manifest = root / f"demo-{rows}-{files}" / "manifest.csv"  # kept from an earlier run in --workdir
        if not manifest.is_file():
            write_shared_demo("image_text", manifest.parent, rows, files=files)
        home = root / f"home-{rows}-{files}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--one", str(manifest), str(space), str(home)],
                             capture_output=True, text=True, env=env)
        if run.returncode != 0:
            raise SystemExit(f"case {case} failed:\n{run.stderr[-3000:]}")
        results.append({**json.loads(run.stdout.strip().splitlines()[-1]), "process_s": time.perf_counter() - t0})
        print(f"{case}: done in {results[-1]['process_s']:.0f} s", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"\nimage+text demo grown by repeating samples; frozen {Path(text).name} + {image}; one epoch at batch 64 "
          f"on 1 thread; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| rows | distinct files / texts | decode s (CPU s) | features s (CPU s) | epoch s (CPU s) | warm s | "
          "peak RSS MB (start, decode, features, epoch) | peak private MB | to trials MB (stream + out of band) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        stages = " | ".join(f"{r[f'{s}_s']:.1f} ({r[f'{s}_cpu']:.1f})" for s in ("decode", "features", "epoch"))
        print(f"| {r['rows']:,} | {r['files']:,} / {r['texts']:,} | {stages} | "
              f"{r['warm_s']:.1f} | {r['rss_start_mb']:.0f}, {r['rss_decode_mb']:.0f}, "
              f"{r['rss_features_mb']:.0f}, {r['rss_epoch_mb']:.0f} | {r['private_mb']:.0f} | "
              f"{r['in_band_mb']:.1f} + {r['out_of_band_mb']:.1f} |")


if __name__ == "__main__":
    main()

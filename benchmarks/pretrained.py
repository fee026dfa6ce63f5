"""What does the feature cache buy? The same pretrained-style encoder pair (a BERT-mini-shaped
text encoder: 4 layers of width 256; a timm image model, mobilenetv3_small_100 at its own
224 px) on the image+text demo, trained two ways, side by side in one run:

  frozen    the encoders' outputs computed once (the one-off cost of building the cache),
            then every trial trains fusion + head on them;
  finetune  every trial trains the encoders end to end on model inputs.

It prints the per-trial seconds of each (the same configuration in this process, median of
``--repeats`` after one uncounted warm-up), the cache's one-off build time and what reusing it
costs, and the wall time of a whole search with each strategy (``--trials`` trials of
``--epochs`` epochs through Ray Tune and MLflow; the frozen search starts on a cold cache, so
its wall time includes the build). The weights are randomly initialised in the real architectures (no network here):
time does not depend on their values, accuracy does (it is printed, but means little).

    python benchmarks/pretrained.py                 # 400 samples, 4 trials x 2 epochs per search
    python benchmarks/pretrained.py --smoke         # seconds: tiny models, 1 trial each
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

STRATEGIES = ("frozen", "finetune")


def make_models(root: Path, smoke: bool, image_model: str) -> tuple[str, str, str]:
    """(text model folder, timm model name, timm checkpoint), saved the way real ones are: a
    BERT-mini-shaped encoder (a tiny 2-layer one with ``smoke``) with a WordPiece tokenizer
    of the demo's words, and the timm model's state dict (timm's ``test_vit`` with ``smoke``)."""
    import timm
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from autofusion.modalities.text import FILLER, WORD_GROUPS

    words = sorted({w for groups in WORD_GROUPS for g in groups for w in g} | set(FILLER))
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    width, layers = (16, 2) if smoke else (256, 4)  # prajjwal1/bert-mini's shape
    config = BertConfig(vocab_size=len(vocab), hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=max(2, width // 64), intermediate_size=4 * width, max_position_embeddings=512)
    folder = root / ("bert-tiny" if smoke else "bert-mini")
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab=vocab).save_pretrained(folder)
    image = "test_vit" if smoke else image_model
    torch.save(timm.create_model(image, pretrained=False).state_dict(), root / "image.pth")
    return str(folder), image, str(root / "image.pth")


def write_space(path: Path, text: str, image: str, checkpoint: str, strategy: str) -> Path:
    """image_text.yaml with the pretrained pair and one hand-built configuration besides the strategy."""
    import yaml

    from autofusion.spaces.load import SPACES_DIR

    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["encoders"] = {"image": {"choices": {"timm": {"model": image, "checkpoint": checkpoint}}},
                       "text": {"choices": {"hf_text": {"model": text, "max_length": 32}}}}
    raw["fusion"] = {"choices": {"mid": {"dim": 64}, "gated": {"dim": 64}}, "weights": "fixed"}
    raw["optimizer"] = {"choices": {"adamw": {}}, "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    raw["train"].update(batch_size=32, augment="none", strategy=strategy, encoder_lr_factor=0.1)
    path.write_text(yaml.safe_dump(raw))
    return path


def one_trial(space_path: Path, data, strategy: str, epochs: int) -> float:
    """In-trial seconds (every epoch's training and validation) of one fixed configuration."""
    import torch
    import yaml

    from autofusion.models.build import build_model
    from autofusion.train.hooks import hooks_for
    from autofusion.train.loop import fit
    from autofusion.trial import TrialConfig

    enc = yaml.safe_load(space_path.read_text())["encoders"]
    flat = {"encoder.image": "timm", "encoder.text": "hf_text", "fusion.type": "mid", "fusion.mid.dim": 64,
            "head.hidden": 128, "head.dropout": 0.1, "loss.type": "cross_entropy", "optimizer.type": "adamw",
            "optimizer.lr": 3e-3, "train.batch_size": 32, "train.epochs": epochs, "train.strategy": strategy,
            **{f"encoder.{m}.{n}.{k}": v for m, c in enc.items() for n, p in c["choices"].items() for k, v in p.items()}}
    tc = TrialConfig.from_flat(flat, data.meta.modalities)
    torch.manual_seed(0)
    model = build_model(tc, data.meta, layout="start")
    hist = fit(model, data, tc, device=torch.device("cpu"), hooks=hooks_for(tc, data))
    return sum(h["epoch_seconds"] for h in hist)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--image-model", default="mobilenetv3_small_100")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.samples, args.trials, args.epochs, args.repeats = 48, 1, 1, 1
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from autofusion.data.demo import write_demo
    from autofusion.data.prepare import prepare_data
    from autofusion.search.driver import run_search
    from autofusion.search.features import build_features
    from autofusion.search.records import SearchOptions
    from autofusion.spaces.load import load_space

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(1)  # as a trial runs (one CPU each)
    root = Path(tempfile.mkdtemp(prefix="af-pretrained-"))
    text, image, ckpt = make_models(root, args.smoke, args.image_model)
    manifest = write_demo("image_text", root / "demo", num_samples=args.samples)
    rows, per_trial, build, reuse, wall, best = {}, {}, None, None, {}, {}
    for strategy in STRATEGIES:
        space_path = write_space(root / f"{strategy}.yaml", text, image, ckpt, strategy)
        space = load_space(space=space_path)
        home = root / f"home-{strategy}"
        data = prepare_data(manifest, space, seed=0, home=home)
        t0 = time.perf_counter()
        build_features(data, space, home=home)
        if strategy == "frozen":
            build = time.perf_counter() - t0
            again = prepare_data(manifest, space, seed=0, home=home)
            t0 = time.perf_counter()
            build_features(again, space, home=home)
            reuse = time.perf_counter() - t0
        one_trial(space_path, data, strategy, 1)  # a warm-up, not counted: a process's first fit pays torch's start-up
        per_trial[strategy] = statistics.median(one_trial(space_path, data, strategy, args.epochs)
                                                for _ in range(args.repeats))
        uri = f"sqlite:///{root / strategy / 'mlflow.db'}"
        cold = root / f"search-home-{strategy}"  # the frozen search builds its cache: its wall time includes that
        result = run_search(SearchOptions(space=str(space_path), data=str(manifest), num_trials=args.trials,
                                          max_epochs=args.epochs, concurrency=args.concurrency, seed=0,
                                          tracking_uri=uri, home=str(cold), quiet=True, scheduler="fifo"))
        wall[strategy], best[strategy] = result.wall_seconds, result.best.best_value if result.best else float("nan")
        rows[strategy] = data.meta.split_counts
    n = rows["frozen"]
    print(f"\nimage+text demo: {args.samples} samples ({n.get('train')} train / {n.get('val')} val), "
          f"text {Path(text).name}, image {image}; {args.trials} trials x {args.epochs} epochs per search, "
          f"concurrency {args.concurrency}, {torch.get_num_threads()} torch thread per trial\n")
    print("| strategy | per-trial seconds | cache, one-off | search wall time | best val accuracy |")
    print("|---|---|---|---|---|")
    print(f"| frozen (cached outputs) | {per_trial['frozen']:.2f} | built {build:.1f} s, reused {reuse:.2f} s | "
          f"{wall['frozen']:.1f} s | {best['frozen']:.3f} |")
    print(f"| finetune (end to end) | {per_trial['finetune']:.2f} | - | {wall['finetune']:.1f} s | {best['finetune']:.3f} |")
    saved = per_trial["finetune"] - per_trial["frozen"]
    print(f"\na frozen trial takes {per_trial['frozen'] / max(per_trial['finetune'], 1e-9):.1%} of a fine-tuned one's "
          f"time; the cache's one-off build equals {build / saved:.1f} trials' saving" if saved > 0 else
          "\nhere a frozen trial is no faster than a fine-tuned one")


if __name__ == "__main__":
    main()

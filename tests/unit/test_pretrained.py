"""Pretrained encoders on tiny models made here (a 2-layer BERT, timm's test_vit, a one-layer
CLIP, a 2-layer wav2vec2): the feature cache (built once, reused with no forward pass,
rebuilt when the model or the preprocessing changes), the light frozen model against the
whole one, and each training strategy."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import yaml

from autofusion.data.demo import write_demo
from autofusion.data.prepare import prepare_data
from autofusion.models import ENCODERS
from autofusion.models.build import build_model, whole_model
from autofusion.models.encoders._pretrained import PretrainedEncoder
from autofusion.models.extractors import load_extractor
from autofusion.search.features import build_features
from autofusion.spaces.load import load_space
from autofusion.train.hooks import hooks_for
from autofusion.train.loop import fit, predict
from autofusion.trial import TrialConfig
from tests.helpers import flat_config
from tests.tiny_models import tiny_bert, tiny_clip, tiny_timm, tiny_wav2vec2

os.environ["HF_HUB_OFFLINE"] = "1"

PRETRAINED = [(m, name) for m in ("image", "text", "audio") for name in ENCODERS[m].names()
              if getattr(ENCODERS[m].get(name), "pretrained", False)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny models, saved once for the module."""
    root = tmp_path_factory.mktemp("models")
    return {"bert": str(tiny_bert(root / "bert")), "vit": str(tiny_timm(root / "vit.pth")),
            "clip": str(tiny_clip(root / "clip")), "w2v": str(tiny_wav2vec2(root / "w2v"))}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return {task: write_demo(task, root / task, num_samples=32) for task in ("image_text", "text_audio")}


def choices(models: dict, modality: str, name: str) -> dict:
    """The parameters of each pretrained encoder family for the tiny models."""
    return {("text", "hf_text"): {"model": models["bert"], "max_tokens": 8},
            ("image", "timm"): {"model": "test_vit", "checkpoint": models["vit"], "max_tokens": 4},
            ("text", "clip"): {"model": models["clip"]},
            ("image", "clip"): {"model": models["clip"], "max_tokens": 4},
            ("audio", "hf_audio"): {"model": models["w2v"], "max_tokens": 4}}[(modality, name)]


def space_file(tmp_path, encoders: dict, strategy=None, extends: str = "image_text"):
    """A built-in space with exactly these encoder choices (and ``train.strategy``)."""
    from autofusion.spaces.load import SPACES_DIR

    raw = yaml.safe_load((SPACES_DIR / f"{extends}.yaml").read_text())
    raw["encoders"] = {m: {"choices": c} for m, c in encoders.items()}
    if strategy is not None:
        raw["train"] = {"strategy": strategy if isinstance(strategy, str) else
                        {"type": "categorical", "choices": list(strategy)}}
    path = tmp_path / f"space-{len(list(tmp_path.glob('space-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_space(space=path)


def trial(space, data, strategy: str, **over) -> TrialConfig:
    encoders = {m: next(iter(space.file.encoders[m].choices)) for m in data.meta.modalities}
    flat = flat_config(data.meta.modalities, encoders, over.pop("fusion", "mid"),
                       **{f"encoder.{m}.{encoders[m]}.{k}": v for m in data.meta.modalities
                          for k, v in space.file.encoders[m].choices[encoders[m]].items()},
                       **{"train.strategy": strategy, **over})
    return TrialConfig.from_flat(flat, data.meta.modalities)


@pytest.mark.parametrize("modality,name", PRETRAINED, ids=[f"{m}={n}" for m, n in PRETRAINED])
def test_every_pretrained_encoder_light_model_matches_the_whole_one(tmp_path, models, demos, modality, name):
    """The light frozen model over cached float16 outputs predicts what the whole model (the
    logged one, backbone over model inputs) predicts; both build and run every fusion kind."""
    task = "text_audio" if modality == "audio" else "image_text"
    other = {"image_text": {"image": "small_cnn", "text": "embedding_bag"},
             "text_audio": {"text": "embedding_bag", "audio": "wave_cnn"}}[task]
    encs = {m: ({name: choices(models, modality, name)} if m == modality else {other[m]: {}}) for m in other}
    space = space_file(tmp_path, encs, strategy=["frozen", "finetune"], extends=task)  # both kinds of arrays
    data = prepare_data(demos[task], space, seed=0, home=tmp_path / "home")
    build_features(data, space, home=tmp_path / "home")
    key = next(k for k in data.extractors if k.startswith(f"{name}-") and not k.endswith("@frozen"))
    data.extractors[key].save(tmp_path / "saved")  # as the logged model keeps it: JSON and the model's own files
    loaded = load_extractor(tmp_path / "saved")
    cells = data.raw[modality].iloc[:5]
    for k, v in data.extractors[key].transform(cells).items():
        np.testing.assert_array_equal(loaded.transform(cells)[k], v)
    for fusion in ("mid", "attention"):
        tc = trial(space, data, "frozen", fusion=fusion)
        torch.manual_seed(0)
        light = build_model(tc, data.meta, layout="start")
        enc = light.encoders[modality]
        assert isinstance(enc, PretrainedEncoder) and enc.backbone is None  # no weights loaded at all
        whole = whole_model(light.eval(), tc, data.meta)
        assert whole.encoders[modality].backbone is not None
        idx = np.arange(len(data.split))
        a, _ = predict(light, data, idx, torch.device("cpu"))
        b, _ = predict(whole, data, idx, torch.device("cpu"))
        assert torch.allclose(a, b, atol=2e-2), (a - b).abs().max()


def test_frozen_outputs_are_cached_once_and_reused_without_a_forward_pass(tmp_path, models, demos, monkeypatch):
    encs = {"image": {"timm": choices(models, "image", "timm")}, "text": {"hf_text": choices(models, "text", "hf_text")}}
    space = space_file(tmp_path, encs)
    home = tmp_path / "home"
    data = prepare_data(demos["image_text"], space, seed=0, home=home)
    notes = build_features(data, space, home=home)
    infos = {i["encoder"]: i for i in data.meta.feature_infos.values() if "cache" in i}
    assert {k: v["cache"] for k, v in infos.items()} == {"timm": "built", "hf_text": "built"}
    assert any("frozen outputs built" in n for n in notes)
    keys = [k for k in data.features if k.endswith("@frozen")]
    first = {k: {a: np.array(v) for a, v in data.features[k].items()} for k in keys}
    assert all(a.dtype == np.float16 for k in keys for n, a in first[k].items() if n != "pad")
    assert not any(k.startswith("image|timm") and "@" not in k for k in data.features)  # frozen only: no pixels
    monkeypatch.setattr(PretrainedEncoder, "outputs", lambda *a: pytest.fail("a forward pass on a cache hit"))
    again = prepare_data(demos["image_text"], space, seed=0, home=home)  # a second search on the same data
    build_features(again, space, home=home)
    assert {i["encoder"]: i["cache"] for i in again.meta.feature_infos.values() if "cache" in i} == \
        {"timm": "reused", "hf_text": "reused"}
    for k in keys:
        assert isinstance(again.features[k]["tokens"].values, np.memmap)  # memory-mapped from disk
        for n, a in first[k].items():
            np.testing.assert_array_equal(again.features[k][n], a)


def test_the_cache_is_rebuilt_when_the_model_or_the_preprocessing_changes(tmp_path, models, demos):
    home = tmp_path / "home"
    bert = choices(models, "text", "hf_text")
    status = []
    for params in (bert, {**bert, "max_length": 9}, {**bert, "pooling": "cls"}):  # pooling shapes no cached array
        space = space_file(tmp_path, {"image": {"small_cnn": {}}, "text": {"hf_text": params}})
        data = prepare_data(demos["image_text"], space, seed=0, home=home)
        build_features(data, space, home=home)
        status.append(next(i["cache"] for i in data.meta.feature_infos.values() if "cache" in i))
    tiny_bert(tmp_path / "bert2", layers=1)  # other weights under the same folder name
    space = space_file(tmp_path, {"image": {"small_cnn": {}}, "text": {"hf_text": {**bert, "model": str(tmp_path / "bert2")}}})
    data = prepare_data(demos["image_text"], space, seed=0, home=home)
    build_features(data, space, home=home)
    status.append(next(i["cache"] for i in data.meta.feature_infos.values() if "cache" in i))
    assert status == ["built", "built", "reused", "built"]
    assert len(list((home / "cache" / "features").iterdir())) == 3


@pytest.mark.parametrize("strategy", ["frozen", "staged", "finetune"])
def test_each_strategy_trains(tmp_path, models, demos, strategy):
    encs = {"image": {"timm": choices(models, "image", "timm")}, "text": {"hf_text": choices(models, "text", "hf_text")}}
    space = space_file(tmp_path, encs, strategy=["frozen", "staged", "finetune"])
    data = prepare_data(demos["image_text"], space, seed=0, home=tmp_path / "home")
    build_features(data, space, home=tmp_path / "home")
    tc = trial(space, data, strategy, **{"train.epochs": 3, "train.frozen_epochs": 1, "train.unfreeze_blocks": 1,
                                         "train.encoder_lr_factor": 0.5, "optimizer.lr": 1e-2})
    torch.manual_seed(0)
    model = build_model(tc, data.meta, layout="start")
    hooks = hooks_for(tc, data)
    text = model.encoders["text"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    keys = []
    history = fit(model, data, tc, device=torch.device("cpu"), hooks=hooks,
                  on_epoch_end=lambda e, m, mod: keys.append(dict(mod.feature_keys)))
    assert len(history) == 3 and all(np.isfinite(h["train_loss"]) for h in history)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("fusion.") for n in moved) and any(n.startswith("head.") for n in moved)
    backbone = {n for n in before if ".backbone." in n}
    if strategy == "frozen":
        assert text.backbone is None and not backbone and not hooks
        assert all(k["text"].endswith("@frozen") for k in keys)
    elif strategy == "staged":
        assert keys[0]["text"].endswith("@frozen") and not keys[1]["text"].endswith("@frozen")  # switched after 1
        top = {n for n in moved & backbone if n.startswith("encoders.text.")}
        assert top and all("layer.1." in n or "pooler" in n for n in top)  # the last block only
        assert not any("embeddings" in n for n in moved)
    else:
        assert all(not k["text"].endswith("@frozen") for k in keys)
        assert any("embeddings" in n for n in moved & backbone)
    if strategy != "frozen":  # the encoders train at a lower rate, on the same schedule
        opt_groups = hooks[0].group
        assert opt_groups is not None and opt_groups["lr"] == pytest.approx(0.5e-2)
    assert whole_model(model, tc, data.meta).feature_keys["text"] == keys[-1]["text"].removesuffix("@frozen")


def test_only_what_the_strategies_need_is_computed(tmp_path, models, demos):
    encs = {"image": {"small_cnn": {}}, "text": {"hf_text": choices(models, "text", "hf_text")}}
    for strategy, expect in (("finetune", {""}), (None, {"@frozen"}), (["frozen", "staged"], {"", "@frozen"})):
        space = space_file(tmp_path, encs, strategy=strategy)
        data = prepare_data(demos["image_text"], space, seed=0, home=tmp_path / "home")
        build_features(data, space, home=tmp_path / "home")
        assert {k.split("hf_text-")[1][10:] for k in data.features if "hf_text" in k} == expect


def test_an_interrupted_embedding_run_resumes_at_its_last_chunk(tmp_path, models, demos, monkeypatch):
    """Ctrl-C while the frozen outputs are computed: the next run embeds only what is left."""
    import autofusion.search.features as features

    encs = {"image": {"timm": choices(models, "image", "timm")}, "text": {"embedding_bag": {}}}
    space = space_file(tmp_path, encs)
    home = tmp_path / "home"
    monkeypatch.setattr(features, "embed_chunk", lambda: 8)  # 32 distinct images: 4 chunks
    outputs = PretrainedEncoder.outputs
    seen: list[int] = []

    def interrupted(enc, x):
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(len(x))
        return outputs(enc, x)

    monkeypatch.setattr(PretrainedEncoder, "outputs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_features(prepare_data(demos["image_text"], space, seed=0, home=home), space, home=home)
    assert seen == [8, 8]
    monkeypatch.setattr(PretrainedEncoder, "outputs", lambda enc, x: seen.append(len(x)) or outputs(enc, x))
    data = prepare_data(demos["image_text"], space, seed=0, home=home)
    build_features(data, space, home=home)
    assert seen == [8, 8, 8, 8]  # the two chunks written before the interruption were kept
    key = next(k for k in data.features if k.endswith("@frozen"))
    whole = prepare_data(demos["image_text"], space, seed=0, home=tmp_path / "other")
    build_features(whole, space, home=tmp_path / "other")  # one uninterrupted run
    for name, a in data.features[key].items():
        np.testing.assert_array_equal(np.asarray(a), np.asarray(whole.features[key][name]))


def test_texts_of_any_length_cache_chunk_after_chunk_at_one_shape(tmp_path, models, demos, monkeypatch):
    """Short texts (a name, a title) beside long ones: a chunk of short texts is tokenized to
    its own longest, yet every chunk's model inputs and frozen outputs are written at one shape,
    and a text's outputs are those it gets alone (the served model's batches)."""
    import pandas as pd

    import autofusion.search.features as features

    df = pd.read_csv(demos["image_text"])
    df["text"] = [("goat " * (1 if i < 16 else 12)).strip() for i in range(len(df))]  # 2 chunks short, 2 long
    manifest = tmp_path / "manifest.csv"
    df.assign(image=[str(demos["image_text"].parent / p) for p in df["image"]]).to_csv(manifest, index=False)
    df["text"] = df["text"] + [f" {i}" for i in range(len(df))]  # distinct texts: one chunk holds 8
    df.assign(image=[str(demos["image_text"].parent / p) for p in df["image"]]).to_csv(manifest, index=False)
    monkeypatch.setattr(features, "embed_chunk", lambda: 8)
    monkeypatch.setattr(features, "MODEL_INPUTS_CHUNK", 8)
    encs = {"image": {"small_cnn": {}}, "text": {"hf_text": {**choices(models, "text", "hf_text"), "max_tokens": 24}}}
    space = space_file(tmp_path, encs, strategy=["frozen", "finetune"])
    data = prepare_data(manifest, space, seed=0, home=tmp_path / "home")
    build_features(data, space, home=tmp_path / "home")
    frozen = next(v for k, v in data.features.items() if k.endswith("@frozen"))
    inputs = next(v for k, v in data.features.items() if "hf_text" in k and not k.endswith("@frozen"))
    assert frozen["tokens"].shape[1] == 24 and inputs["input_ids"].shape[1] > 14
    pad = np.asarray(frozen["pad"])
    short = np.array([len(t.split()) == 2 for t in data.raw["text"]])
    assert pad[short].sum(1).min() > pad[~short].sum(1).max()  # the short texts' tokens are mostly padding
    key = next(k for k in data.extractors if k.endswith("@frozen"))
    alone = data.extractors[key].transform(data.raw["text"].iloc[:1])  # one text in a batch of its own
    np.testing.assert_array_equal(alone["pad"][0], pad[0])
    real = ~pad[0]  # what a padded position holds is masked out by every fusion
    np.testing.assert_allclose(alone["tokens"][0][real].astype(np.float32),
                               np.asarray(frozen["tokens"][0], np.float32)[real], atol=1e-2)
    mixed = data.raw["text"].iloc[[0, 20, 1, 21]]  # short, long, short, long: run longest first, given back in order
    together = data.extractors[key].transform(mixed)
    for i, cell in enumerate(mixed):
        one = data.extractors[key].transform(pd.Series([cell]))
        np.testing.assert_allclose(together["pooled"][i].astype(np.float32), one["pooled"][0].astype(np.float32),
                                   atol=1e-2)

"""Training strategies (``train.align_weight``, ``train.reconstruct_weight``, ``train.missing``):
the contrastive loss learns aligned pairs and nothing from shuffled ones, the auxiliary
losses reach every head they train and are logged per epoch, learned missing embeddings
stand in for absent inputs under every fusion operator, and the space keys validate,
sample and stay out of spaces that do not set them."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from autofusion.errors import ConfigError
from autofusion.models import FUSIONS
from autofusion.models.auxiliary import AlignmentHeads, ReconstructionHeads
from autofusion.models.build import build_model
from autofusion.models.missing import MissingEmbeddings
from autofusion.search.handbuilt import default_trial
from autofusion.spaces import TrialConfig, define_by_run, load_space
from autofusion.train.alignment import alignment_loss
from autofusion.train.hooks import hooks_for
from autofusion.train.loop import fit
from autofusion.train.reconstruction import reconstruction_loss
from tests.helpers import fake_data, flat_config

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("align_weight", "reconstruct_weight", "missing", "soup_k")  # this file's train.* keys
MODS = ["image", "text"]
SMALL = {"encoder.image.small_cnn.width": 8, "encoder.text.embedding_bag.dim": 8}


def _flat(fusion: str = "mid", **over) -> dict:
    return flat_config(MODS, {"image": "small_cnn", "text": "embedding_bag"}, fusion, **{**SMALL, **over})


# ---------------------------------------------------------------- alignment


def _train_alignment(shuffled: bool, steps: int = 150, batch: int = 32) -> tuple[float, float]:
    """Trains alignment heads on fresh pairs each step (text = a fixed linear map of the image
    features plus noise); returns the mean loss of the first and of the last 20 steps."""
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(16, 24, generator=gen)
    torch.manual_seed(0)
    heads = AlignmentHeads({"image": 16, "text": 24}, dim=32)
    opt = torch.optim.Adam(heads.parameters(), lr=1e-2)
    present = {"image": torch.ones(batch, dtype=torch.bool), "text": torch.ones(batch, dtype=torch.bool)}
    losses = []
    for _ in range(steps):
        x = torch.randn(batch, 16, generator=gen)
        y = x @ mix + 0.1 * torch.randn(batch, 24, generator=gen)
        if shuffled:  # a new random pairing every step: nothing to learn
            y = y[torch.randperm(batch, generator=gen)]
        loss = alignment_loss(heads, {"image": x, "text": y}, present)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:20]) / 20, sum(losses[-20:]) / 20


def test_contrastive_loss_decreases_on_aligned_pairs_and_not_on_shuffled_ones():
    chance = math.log(32)  # InfoNCE of a model that cannot tell the 32 candidates apart
    first, last = _train_alignment(shuffled=False)
    assert last < 0.25 * chance and last < 0.25 * first, (first, last)
    first_s, last_s = _train_alignment(shuffled=True)
    assert last_s > 0.95 * chance, (first_s, last_s)  # never better than chance
    assert last_s > 5 * last


def test_alignment_uses_only_rows_with_both_inputs():
    heads = AlignmentHeads({"a": 4, "b": 4})
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    some = torch.tensor([True, True, True, False, False, False])
    present = {"a": some, "b": torch.ones(6, dtype=torch.bool)}
    base = alignment_loss(heads, {"a": a, "b": b}, present)
    b2 = b.clone()
    b2[~some] = 1e3  # garbage where "a" is absent changes nothing
    assert torch.allclose(base, alignment_loss(heads, {"a": a, "b": b2}, present))
    one = torch.tensor([True, False, False, False, False, False])
    assert alignment_loss(heads, {"a": a, "b": b}, {"a": one, "b": one}).item() == 0.0  # one pair: no negatives


def test_reconstruction_predicts_an_input_from_the_other():
    torch.manual_seed(0)
    mix = torch.randn(8, 12)
    heads = ReconstructionHeads({"a": 8, "b": 12}, hidden=32)
    opt = torch.optim.Adam(heads.parameters(), lr=1e-2)
    ones = {"a": torch.ones(64, dtype=torch.bool), "b": torch.ones(64, dtype=torch.bool)}
    losses = []
    for _ in range(100):
        a = torch.randn(64, 8)
        loss = reconstruction_loss(heads, {"a": a, "b": torch.tanh(a @ mix)}, ones)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.3 * sum(losses[:10]) / 10


def test_auxiliary_losses_are_logged_and_train_every_head():
    data = fake_data(MODS, n=24)
    tc = TrialConfig.from_flat(_flat(**{"train.align_weight": 0.5, "train.reconstruct_weight": 0.5,
                                        "train.epochs": 2}), MODS)
    model = build_model(tc, data.meta)
    before = {n: p.detach().clone() for n, p in model.train_heads.named_parameters()}
    history = fit(model, data, tc, device=torch.device("cpu"), hooks=hooks_for(tc, data))
    assert all("train_align" in h and "train_reconstruct" in h for h in history)
    assert all(h["train_align"] > 0 and h["train_reconstruct"] > 0 for h in history)
    unchanged = [n for n, p in model.train_heads.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged and "align.log_scale" in before  # the temperature is learned too


def test_strategies_off_build_the_model_as_before():
    data = fake_data(MODS, n=8)
    tc = TrialConfig.from_flat(_flat(), MODS)
    model = build_model(tc, data.meta)
    assert model.missing is None and len(model.train_heads) == 0 and hooks_for(tc, data) == []
    assert not [k for k in model.state_dict() if k.startswith(("missing.", "train_heads."))]


# ---------------------------------------------------------------- learned missing embeddings


def test_missing_embeddings_replace_absent_rows_pooled_and_tokens():
    emb = MissingEmbeddings({"a": 3, "b": 3})
    with torch.no_grad():
        emb.vectors["a"].fill_(7.0)
    keep = torch.tensor([True, False])
    x = torch.randn(2, 3)
    toks = torch.randn(2, 4, 3)
    feats, present = emb({"a": x, "b": x}, {"a": keep, "b": torch.ones(2, dtype=torch.bool)})
    assert torch.equal(feats["a"][0], x[0]) and torch.equal(feats["a"][1], torch.full((3,), 7.0))
    assert feats["b"] is x and all(bool(p.all()) for p in present.values())
    t, pad = emb({"a": (toks, None)}, {"a": keep})[0]["a"]
    assert torch.equal(t[0], toks[0]) and torch.equal(t[1], torch.full((4, 3), 7.0))
    assert pad.tolist() == [[False] * 4, [False, True, True, True]]  # one learned token per absent row


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_learned_missing_input_stands_in_for_every_fusion(fusion):
    """Rows without text predict the same whatever their (garbage) text holds, and the
    learned text vector gets a gradient through the fusion operator."""
    data = fake_data(MODS, n=8)
    tc = TrialConfig.from_flat(_flat(fusion, **{"train.missing": "learned"}), MODS)
    model = build_model(tc, data.meta).eval()
    image = torch.from_numpy(data.arrays["image"][:4])
    text = torch.from_numpy(data.arrays["text"][:4]).long()
    present = {"image": torch.ones(4, dtype=torch.bool), "text": torch.tensor([True, False, True, False])}
    out = model({"image": image, "text": text}, present)
    other = text.clone()
    other[~present["text"]] = torch.randint(2, 30, (2, text.shape[1]))
    out2 = model({"image": image, "text": other}, present)
    assert torch.allclose(out[~present["text"]], out2[~present["text"]], atol=1e-5)
    out.sum().backward()
    assert model.missing.vectors["text"].grad is not None and model.missing.vectors["text"].grad.abs().sum() > 0
    assert model.missing.vectors["image"].grad is None or model.missing.vectors["image"].grad.abs().sum() == 0


# ---------------------------------------------------------------- the space keys


def _space(tmp_path: Path, train: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"extends": "image_text", "task": "image_text", "train": train}))
    return path


@pytest.mark.parametrize(("train", "message"), [
    ({"align_weight": -0.1}, "train.align_weight: must be >= 0 (0 turns it off), but got -0.1"),
    ({"reconstruct_weight": {"type": "float", "low": -1.0, "high": 1.0}}, "train.reconstruct_weight: must be >= 0"),
    ({"missing": {"type": "categorical", "choices": ["zero", "mean"]}},
     "train.missing: must be one of zero, learned, but got 'mean'"),
    ({"soup_k": 40}, "train.soup_k: must be >= 0 and <= 16 (0 or 1 turns it off), but got 40"),
    ({"soup_k": 2.5}, "train.soup_k: expected int, but got 2.5"),
])
def test_bad_strategy_values_are_rejected_where_written(tmp_path, train, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_space(space=_space(tmp_path, train))


def test_strategy_keys_are_sampled_when_set_and_absent_otherwise(tmp_path):
    import optuna

    space = load_space(space=_space(tmp_path, {
        "align_weight": {"type": "categorical", "choices": [0.1, 0.0]}, "reconstruct_weight": 0.2,
        "missing": {"type": "categorical", "choices": ["learned", "zero"]}, "soup_k": 3}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    flat = {**define_by_run(space, 4)(trial), **trial.params}
    assert {f"train.{k}" for k in KEYS} <= set(flat)
    tc = TrialConfig.from_flat({**flat, **{k: v for k, v in _flat().items() if k not in flat}}, MODS)
    assert (tc.reconstruct_weight, tc.soup_k) == (0.2, 3) and tc.missing in ("learned", "zero")
    default = default_trial(space, "classification")  # the hand-built first trial keeps them off
    assert default["train.align_weight"] == 0.0 and default["train.missing"] == "zero"
    plain = optuna.create_study().ask()
    assert not [k for k in define_by_run(load_space("image_text"), 4)(plain) if k.split(".")[-1] in KEYS]


def test_readme_documents_each_strategy_with_a_valid_example(tmp_path):
    text = (ROOT / "search_spaces" / "README.md").read_text(encoding="utf-8")
    section = text.split("## Training strategies", 1)[1].split("\n## ", 1)[0]
    for key in KEYS:
        assert f"`{key}`" in section, key
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "example.yaml"
    path.write_text(example, encoding="utf-8")
    train = load_space(space=path).file.train
    assert all(getattr(train, k) is not None for k in KEYS)

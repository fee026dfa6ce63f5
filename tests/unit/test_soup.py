"""Checkpoint averaging (``train.soup_k``): the pool keeps the k best epochs, the average is
kept only when it beats the best of them (and then it is the model's weights and the
checkpoint the search keeps), and it is logged."""

from __future__ import annotations

import os

import pytest
import torch

from autofusion.models.build import build_model
from autofusion.search.trainable import TrialSettings, run_trial
from autofusion.train import soup as soup_module
from autofusion.train.hooks import hooks_for
from autofusion.train.soup import SoupHook, average_states, soup_hook
from autofusion.trial import TrialConfig
from tests.helpers import fake_data, flat_config

MODS = ["image", "text"]


def _flat(**over) -> dict:
    return flat_config(MODS, {"image": "small_cnn", "text": "embedding_bag"}, "mid",
                       **{"encoder.image.small_cnn.width": 8, "encoder.text.embedding_bag.dim": 8, **over})


def _model_and_data(**over):
    data = fake_data(MODS, n=16)
    tc = TrialConfig.from_flat(_flat(**over), MODS)
    return build_model(tc, data.meta), data, tc


def test_average_states_means_floats_and_keeps_counters_from_the_first():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 3


def test_the_pool_keeps_the_k_best_epochs():
    model, data, tc = _model_and_data()
    hook = SoupHook(3, "val_accuracy", "max")
    hook.start(model, None, data, tc)
    for epoch, value in enumerate([0.2, 0.5, 0.4, 0.1, 0.6], start=1):
        hook.epoch_end(epoch, {"val_accuracy": value}, model)
    assert [e for _, e, _ in hook.pool] == [5, 2, 3]
    hook.epoch_end(5, {"val_accuracy": 0.9}, model)  # an epoch is offered once
    assert [v for v, _, _ in hook.pool] == [0.6, 0.5, 0.4]


def _perturbed(model: torch.nn.Module, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("claimed_loss", [1e9, -1.0])
def test_the_soup_is_kept_only_when_it_beats_the_best_epoch(claimed_loss):
    """Epochs claim a validation loss; the soup's is measured. Claimed 1e9: any real soup is
    better and becomes the model's weights. Claimed -1: none can be, and the model keeps the
    last epoch's weights."""
    model, data, tc = _model_and_data()
    hook = SoupHook(3, "val_loss", "min")
    hook.start(model, None, data, tc)
    states = []
    for epoch in (1, 2, 3):
        states.append(_perturbed(model, epoch))
        hook.epoch_end(epoch, {"val_loss": claimed_loss}, model)
    history = [{}, {}, {}]
    hook.finish(model, history)
    kept = claimed_loss > 0
    assert hook.soup.kept is kept and history[-1]["soup_kept"] == float(kept)
    assert "soup_val_loss" in history[-1] and hook.soup.epochs == (1, 2, 3)
    expected = average_states(states) if kept else states[-1]
    assert all(torch.allclose(v, expected[k]) for k, v in model.state_dict().items())


def test_soup_k_below_two_adds_no_hook():
    _, data, tc = _model_and_data(**{"train.soup_k": 1})
    assert soup_hook(hooks_for(tc, data)) is None
    _, data, tc = _model_and_data(**{"train.soup_k": 2})
    hook = soup_hook(hooks_for(tc, data, metric="val_loss"))
    assert (hook.k, hook.metric, hook.mode) == (2, "val_loss", "min")


@pytest.mark.parametrize("soup_wins", [True, False])
def test_the_search_checkpoints_the_soup_when_it_is_kept(monkeypatch, soup_wins):
    """The trainable (``run_trial``) with ``tune.report`` recorded: a kept soup is the last
    checkpoint, with ``soup_kept`` reported; a losing soup never is. The soup's evaluation is
    replaced by a fixed score, so the outcome does not hang on a tiny model's noise."""
    from ray import tune

    reports: list[tuple[dict, dict | None]] = []

    def report(metrics, checkpoint=None):
        state = torch.load(os.path.join(checkpoint.path, "model.pt"), weights_only=True) if checkpoint else None
        reports.append((dict(metrics), state))

    real_evaluate = soup_module.evaluate
    brewed: list[dict] = []

    def evaluate(model, data, idx, device, **kw):
        metrics = real_evaluate(model, data, idx, device, **kw)
        brewed.append({k: v.clone() for k, v in model.state_dict().items()})
        return {**metrics, "val_accuracy": 2.0 if soup_wins else -1.0}

    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(soup_module, "evaluate", evaluate)
    data = fake_data(MODS, n=16)
    config = _flat(**{"train.epochs": 3, "train.soup_k": 2})
    run_trial(config, data, TrialSettings(MODS, 3, "val_accuracy", "max", 0, 1))
    assert len(reports) == 3 and brewed  # epoch 2 has two epochs to average
    assert all(r[0]["soup_kept"] == float(soup_wins) for r in reports[1:])
    checkpoints = [state for _, state in reports if state is not None]
    if soup_wins:
        assert reports[1][1] is not None and reports[-1][0]["soup_val_accuracy"] == 2.0
        last = checkpoints[-1]
        assert any(all(torch.allclose(last[k], b[k]) for k in last) for b in brewed)
    else:
        assert not any(all(torch.allclose(c[k], b[k]) for k in c) for c in checkpoints for b in brewed)

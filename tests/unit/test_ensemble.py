"""The greedy ensemble (Caruana et al. 2004): selection on synthetic validation outputs (fast),
the choice over trial records with saved outputs, the logged ensemble predicting raw inputs
after ``mlflow.pyfunc.load_model`` from a sqlite store in tmp_path, and its promotion."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from autofusion import modelregistry, tracking
from autofusion.search.ensemble import (
    VAL_OUTPUTS,
    as_outputs,
    choose_ensemble,
    greedy_selection,
    probabilities,
)
from autofusion.search.records import Settings, TrialRecord
from tests.helpers import fake_data, flat_config, new_store


def _onehot(pred: np.ndarray, k: int, sure: float = 0.8) -> np.ndarray:
    """Probabilities that put ``sure`` on the predicted class and spread the rest."""
    p = np.full((len(pred), k), (1 - sure) / (k - 1))
    p[np.arange(len(pred)), pred] = sure
    return p


def _error(y: np.ndarray):
    """Regret = error rate, tie-break = log loss."""
    def score(avg: np.ndarray) -> tuple[float, float]:
        return float((avg.argmax(1) != y).mean()), float(-np.log(np.clip(avg[np.arange(len(y)), y], 1e-6, 1)).mean())
    return score


def test_three_models_wrong_on_different_thirds_vote_each_other_right():
    y = np.repeat(np.arange(3), 10)  # 30 samples, 3 classes
    preds = []
    for third in range(3):
        wrong = y.copy()
        wrong[third * 10:(third + 1) * 10] = (wrong[third * 10:(third + 1) * 10] + 1) % 3  # wrong on one third
        preds.append(_onehot(wrong, 3))
    sel = greedy_selection(preds, _error(y))
    assert sel.trajectory[0] == pytest.approx(1 / 3) and sel.trajectory[-1] == 0.0
    assert len(sel.counts) >= 2
    assert sum(sel.weights.values()) == pytest.approx(1.0)
    assert sel.trajectory == sorted(sel.trajectory, reverse=True)  # cut back to the best round


@pytest.mark.parametrize("seed", range(8))
def test_the_ensemble_is_never_worse_than_the_best_candidate_on_validation(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 40)
    preds = [rng.dirichlet(np.ones(4), 40) for _ in range(6)]
    score = _error(y)
    single = min(score(p)[0] for p in preds)
    sel = greedy_selection(preds, score, rounds=20)
    avg = sum(w * preds[i] for i, w in sel.weights.items())
    assert score(avg)[0] <= single + 1e-12
    assert sel.trajectory[-1] == min(sel.trajectory)


def test_ties_prefer_a_member_already_in_then_the_lower_tie_break_then_the_better_ranked():
    y = np.array([0, 1, 0, 1])
    good = _onehot(y, 2, 0.9)
    sel = greedy_selection([good, good.copy(), good.copy()], _error(y))
    assert sel.counts == {0: 1}  # identical candidates: the first, once (more rounds add nothing)
    surer = _onehot(y, 2, 0.99)  # the same accuracy, lower log loss
    sel = greedy_selection([good, surer], _error(y))
    assert list(sel.counts) == [1]


def test_a_single_candidate_is_its_own_ensemble():
    y = np.array([0, 1])
    sel = greedy_selection([_onehot(y, 2)], _error(y))
    assert sel.counts == {0: 1} and sel.weights == {0: 1.0}
    with pytest.raises(ValueError):
        greedy_selection([], _error(y))


@pytest.mark.parametrize("target", ["classification", "multilabel", "regression"])
def test_outputs_round_trip_through_probabilities(target):
    out = torch.randn(5, 3 if target != "regression" else 1)
    back = as_outputs(probabilities(out, target), target)
    assert np.allclose(probabilities(back, target), probabilities(out, target), atol=1e-5)


def _trials(folder: Path, outputs: list[np.ndarray], values: list[float]) -> list[TrialRecord]:
    """Finished trials whose checkpoints hold ``outputs`` as their validation outputs."""
    trials = []
    for i, (p, v) in enumerate(zip(outputs, values), 1):
        ckpt = folder / f"ckpt{i}"
        ckpt.mkdir(parents=True)
        np.save(ckpt / VAL_OUTPUTS, p.astype(np.float32))
        trials.append(TrialRecord(f"t{i}", i, {"fusion.type": "mid"}, status="finished", best_value=v, best_epoch=1,
                                  checkpoint=str(ckpt), run_id=f"r{i}", history=[{"val_accuracy": v}]))
    return trials


SETTINGS = Settings(num_trials=3, max_epochs=2, concurrency=1, seed=0, sampler="tpe", scheduler="asha",
                    metric="val_accuracy", mode="max", objectives=(), time_budget=None, cpus_per_trial=1,
                    gpus_per_trial=0, grace_period=1)


def test_choose_ensemble_keeps_an_ensemble_only_when_it_beats_the_best_trial(tmp_path):
    data = fake_data(["image"], n=48, classes=3)
    y = data.targets[data.indices(1)]  # 12 validation rows
    preds = []
    for third in range(3):
        wrong = y.copy()
        wrong[third * 4:(third + 1) * 4] = (wrong[third * 4:(third + 1) * 4] + 1) % 3
        preds.append(_onehot(wrong, 3))
    trials = _trials(tmp_path, preds, [2 / 3, 2 / 3, 2 / 3])
    choice = choose_ensemble(trials, trials[0], data, SETTINGS)
    assert choice.kept and choice.value == pytest.approx(1.0) and choice.best_value == pytest.approx(2 / 3)
    assert {t.number for t in choice.members} == {1, 2, 3} and sum(choice.weights) == pytest.approx(1.0)
    assert choice.weights == sorted(choice.weights, reverse=True)

    same = _trials(tmp_path / "same", [preds[0], preds[0]], [2 / 3, 2 / 3])
    choice = choose_ensemble(same, same[0], data, SETTINGS)
    assert not choice.kept and choice.value == choice.best_value  # never worse, but nothing gained

    lonely = _trials(tmp_path / "lonely", [preds[0]], [2 / 3])
    lonely.append(TrialRecord("t9", 9, {}, status="finished", best_value=0.1, best_epoch=1))  # no outputs saved
    assert choose_ensemble(lonely, lonely[0], data, SETTINGS) is None


@pytest.fixture(scope="module")
def logged_ensemble(tmp_path_factory, store_template):
    """(ensemble URI, store, manifest, data, members): two untrained image+text models of
    different fusions logged as one ensemble in a search's run."""
    from autofusion.data.demo import write_demo
    from autofusion.data.prepare import prepare_data
    from autofusion.models.build import build_model
    from autofusion.search.features import build_features
    from autofusion.serving.ensemble import Member, log_ensemble_model
    from autofusion.spaces import load_space
    from autofusion.trial import TrialConfig

    root = tmp_path_factory.mktemp("ensemble")
    manifest = write_demo("image_text", root / "demo", num_samples=24)
    data = prepare_data(manifest, load_space("image_text"), seed=0, home=root / "home")
    build_features(data, load_space("image_text"), home=root / "home")  # the fitted TF-IDF
    members = []
    for i, (fusion, text) in enumerate([("mid", "embedding_bag"), ("gated", "tfidf")]):
        flat = flat_config(["image", "text"], {"image": "small_cnn", "text": text}, fusion,
                           **{"encoder.image.small_cnn.width": 8, "encoder.text.embedding_bag.dim": 8})
        tc = TrialConfig.from_flat(flat, data.meta.modalities)
        torch.manual_seed(i)
        members.append(Member(build_model(tc, data.meta).eval(), tc, [0.75, 0.25][i], i + 1, None))
    uri = new_store(root / "mlruns", store_template)
    parent = tracking.client(uri).create_run(tracking.experiment_id(uri, "demo")).info.run_id
    return log_ensemble_model(uri, parent, members, data), uri, manifest, data, parent


def test_the_logged_ensemble_predicts_raw_inputs_after_loading(logged_ensemble):
    model_uri, uri, manifest, data, _ = logged_ensemble
    tracking.client(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    assert model.metadata.get_input_schema().input_names() == ["image", "text"]
    rows = pd.read_csv(manifest).head(4)
    paths = pd.DataFrame({"image": [str(manifest.parent / p) for p in rows["image"]], "text": rows["text"]})
    pred = model.predict(paths)
    classes = data.meta.classes
    probs = pred[[f"prob_{c}" for c in classes]].to_numpy()
    assert len(pred) == 4 and set(pred["label"]) <= set(classes)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    inner = model.unwrap_python_model()
    assert inner.trials == [1, 2] and inner.weights == [0.75, 0.25]
    each = [m.predict(None, paths)[[f"prob_{c}" for c in classes]].to_numpy() for m in inner.members]
    assert np.allclose(probs, 0.75 * each[0] + 0.25 * each[1], atol=1e-6)  # the weighted average of its members
    assert not np.allclose(each[0], each[1])


def test_promote_registers_the_kept_ensemble(logged_ensemble):
    model_uri, uri, _, _, parent = logged_ensemble
    c = tracking.client(uri)
    exp = c.get_run(parent).info.experiment_id
    child = c.create_run(exp, tags={tracking.PARENT_TAG: parent, tracking.KIND_TAG: "trial"}).info.run_id
    c.log_metric(child, "test_accuracy", 0.5)
    c.log_metric(parent, "test_accuracy", 0.75)  # the ensemble's, on the search's run
    for k, v in {"search.metric": "val_accuracy", "search.mode": "max", "search.seed": "0",
                 "data.fingerprint": "abc", "data.split_source": "seeded"}.items():
        c.log_param(parent, k, v)
    for k, v in {tracking.KIND_TAG: "search", "autofusion.task": "demo", "autofusion.best_run_id": child,
                 "autofusion.model_uri": model_uri, "autofusion.model_run_id": parent,
                 "autofusion.ensemble": "kept", "autofusion.ensemble_members": "1:0.7500,2:0.2500"}.items():
        c.set_tag(parent, k, v)
    p = modelregistry.promote(uri, search=parent, name="ens")
    assert p.moved and p.value == 0.75
    mv = c.get_model_version("ens", p.version)
    assert mv.run_id == parent and mv.tags["autofusion.ensemble_members"] == "1:0.7500,2:0.2500"
    assert mv.tags["autofusion.trial_run_id"] == child
    loaded = mlflow.pyfunc.load_model("models:/ens@champion")
    assert type(loaded.unwrap_python_model()).__name__ == "EnsemblePyfunc"


def test_a_trial_saves_the_outputs_of_the_weights_it_checkpoints():
    from autofusion.models.build import build_model
    from autofusion.search.trainable import _val_outputs
    from autofusion.trial import TrialConfig

    data = fake_data(["image", "text"], n=24)
    flat = flat_config(["image", "text"], {"image": "small_cnn", "text": "embedding_bag"}, "mid",
                       **{"encoder.image.small_cnn.width": 8, "encoder.text.embedding_bag.dim": 8})
    model = build_model(TrialConfig.from_flat(flat, data.meta.modalities), data.meta)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    own = _val_outputs(model, model.state_dict(), data, torch.device("cpu"))
    assert own.shape == (len(data.indices(1)), 3) and np.allclose(own.sum(axis=1), 1, atol=1e-5)
    soup = {k: v + 0.3 if v.is_floating_point() else v for k, v in before.items()}  # other (averaged) weights
    other = _val_outputs(model, soup, data, torch.device("cpu"))
    assert not np.allclose(own, other)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model is untouched

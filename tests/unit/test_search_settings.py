"""Search settings: flags over the space file, samplers and schedulers by name."""

from __future__ import annotations

import optuna
import pytest
import yaml

from autofusion.errors import ConfigError
from autofusion.search.handbuilt import default_trial, first_trials
from autofusion.search.records import SAMPLERS, SCHEDULERS, SearchOptions
from autofusion.search.settings import (
    fit_to_cluster,
    make_sampler,
    make_scheduler,
    resolve_settings,
)
from autofusion.search.trainable import trial_seed
from autofusion.spaces import define_by_run, load_space
from autofusion.spaces.distributions import space_distributions

SPACE = load_space("image_text")


def test_flags_override_the_space_file():
    s = resolve_settings(SPACE, SearchOptions(num_trials=3, max_epochs=2, seed=5, sampler="random"), "classification")
    assert (s.num_trials, s.max_epochs, s.seed, s.sampler) == (3, 2, 5, "random")
    assert s.scheduler == SPACE.file.search.scheduler == "fifo" and s.metric == "val_f1_macro" and s.mode == "max"
    assert s.grace_period <= s.max_epochs
    assert fit_to_cluster(s, {"CPU": 4}).concurrency == 3  # 4 CPUs / 1 per trial, capped at the number of trials


def test_concurrency_follows_the_cluster_unless_told():
    s = resolve_settings(SPACE, SearchOptions(num_trials=8, cpus_per_trial=2), "classification")
    assert s.concurrency == 0  # not known before Ray says how many CPUs there are
    assert fit_to_cluster(s, {"CPU": 6}).concurrency == 3
    assert fit_to_cluster(s, {"CPU": 1}).concurrency == 1
    told = resolve_settings(SPACE, SearchOptions(num_trials=8, concurrency=2), "classification")
    assert fit_to_cluster(told, {"CPU": 16}).concurrency == 2
    assert fit_to_cluster(resolve_settings(SPACE, SearchOptions(gpus_per_trial=0.5), "classification"),
                          {"CPU": 4, "GPU": 1}).gpus_per_trial == 0.5


def test_objectives_switch_to_fifo_and_nsga2_gets_one():
    s = resolve_settings(SPACE, SearchOptions(objectives=("latency_ms",)), "classification")
    assert s.scheduler == "fifo" and s.objectives == ("latency_ms",)
    s = resolve_settings(SPACE, SearchOptions(sampler="nsga2"), "classification")
    assert s.objectives == ("num_params",) and s.scheduler == "fifo"


@pytest.mark.parametrize("opts,message", [
    (SearchOptions(metric="val_rmse"), "unknown metric 'val_rmse' for classification targets; known: "
                                       "val_loss, val_accuracy, val_f1_macro, val_recall_macro, val_precision_macro, val_roc_auc, val_pr_auc, "
                                       "val_log_loss"),
    (SearchOptions(objectives=("speed",)), "unknown objective 'speed'; known: num_params, latency_ms"),
    (SearchOptions(cpus_per_trial=1.5), "--cpus-per-trial above 1 must be a whole number, but got 1.5"),
    (SearchOptions(gpus_per_trial=1.5), "--gpus-per-trial above 1 must be a whole number, but got 1.5"),
])
def test_bad_settings(opts, message):
    with pytest.raises(ConfigError) as err:
        resolve_settings(SPACE, opts, "classification")
    assert str(err.value) == message


def test_a_metric_that_does_not_fit_the_target_is_named():
    with pytest.raises(ConfigError, match="unknown metric 'val_f1_macro' for regression targets; known: val_loss, "
                                          "val_rmse, val_mae, val_r2"):
        resolve_settings(SPACE, SearchOptions(), "regression")
    s = resolve_settings(SPACE, SearchOptions(metric="val_rmse"), "regression")
    assert (s.metric, s.mode) == ("val_rmse", "min")


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_samples_the_conditional_space(name):
    multi = name == "nsga2"
    study = optuna.create_study(sampler=make_sampler(name, 0, 8, multi),
                                directions=["maximize", "minimize"] if multi else ["maximize"])
    fn = define_by_run(SPACE, 4)
    for i in range(6):
        t = study.ask()
        fn(t)
        study.tell(t, [0.1 * i, 100 - i] if multi else 0.1 * i)
    assert len(study.trials) == 6 and len({t.params["fusion.type"] for t in study.trials}) >= 1


def test_cmaes_refuses_multi_objective():
    with pytest.raises(ConfigError, match="cmaes searches one objective"):
        make_sampler("cmaes", 0, 8, True)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_builds(name):
    s = resolve_settings(SPACE, SearchOptions(scheduler=name), "classification")
    assert make_scheduler(name, s) is not None


def test_trial_seed_depends_on_config_and_seed_only():
    a = {"fusion.type": "mid", "optimizer.lr": 0.01}
    assert trial_seed(a, 0) == trial_seed(dict(reversed(list(a.items()))), 0)
    assert trial_seed(a, 0) != trial_seed(a, 1)
    assert trial_seed(a, 0) != trial_seed({**a, "optimizer.lr": 0.02}, 0)


def test_a_new_search_starts_from_the_hand_built_model_then_tries_each_other_fusion():
    fusions = set(SPACE.file.fusion.choices)
    first = first_trials(SPACE, "classification", 12, 0)
    default = first[0]
    # The model a user would write by hand: concat + MLP, AdamW 3e-3 with weight decay 0.01,
    # cross-entropy, the first encoders (the classical ones), every other parameter in the middle
    # of its range.
    assert (default["fusion.type"], default["optimizer.type"], default["optimizer.lr"], default["loss.type"],
            default["encoder.image"], default["encoder.text"], default["fusion.weights"],
            default["optimizer.weight_decay"]) == (
        "mid", "adamw", 3e-3, "cross_entropy", "pixels", "tfidf", "fixed", 1e-2)
    assert "train.batch_size" not in default  # auto in the file: from the training rows (trial.auto_batch_size)
    assert default["encoder.image.pixels.dim"] == 64 and default["head.dropout"] == 0.1
    assert default.keys() == set(space_distributions(SPACE))
    assert [set(p) for p in first[1:]] == [{"fusion.type", "encoder.image", "encoder.text"}] * (len(fusions) - 1)
    assert {(p["encoder.image"], p["encoder.text"]) for p in first} == {("pixels", "tfidf")}  # fusions on equal inputs
    assert {p["fusion.type"] for p in first} == fusions  # each once
    assert first == first_trials(SPACE, "classification", 12, 0)
    assert first[1:] != first_trials(SPACE, "classification", 12, 1)[1:]
    assert len(first_trials(SPACE, "classification", 3, 0)) == 2  # at most two thirds of a small budget
    # Enqueued, the default is trained as it is; the others get the sampler's picks.
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", 0, 12, False))
    for p in first:
        study.enqueue_trial(p)
    fn = define_by_run(SPACE, 4)
    for i, p in enumerate(first):
        t = study.ask()
        fn(t)
        study.tell(t, 0.1 * i)
        assert t.params["fusion.type"] == p["fusion.type"] and "optimizer.lr" in t.params
        assert ("fusion.attention.heads" in t.params) == (p["fusion.type"] == "attention")
        if i == 0:
            assert t.params == {k: v for k, v in default.items() if k in t.params}


def test_the_default_weights_imbalanced_classes_when_the_metric_weighs_them_equally():
    def loss(counts, metric):
        return first_trials(SPACE, "classification", 12, 0, class_counts=counts, metric=metric)[0]["loss.type"]

    assert loss([258, 187], "val_f1_macro") == "weighted_cross_entropy"  # memes' training split: 1.38x
    assert loss([100, 100, 95], "val_f1_macro") == "cross_entropy"  # balanced: the weights would be ~1
    assert loss([258, 187], "val_accuracy") == "cross_entropy"  # accuracy is what plain cross-entropy fits
    assert loss([], "val_f1_macro") == "cross_entropy"


def test_the_default_falls_back_to_what_the_space_offers(tmp_path):
    doc = yaml.safe_load(SPACE.raw_text())
    doc["optimizer"] = {"choices": {"sgd": {"momentum": 0.9}}, "lr": {"type": "float", "low": 0.01, "high": 1.0,
                                                                       "log": True}}
    doc["fusion"]["choices"] = {k: doc["fusion"]["choices"][k] for k in ("attention", "late")}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    space = load_space(None, str(tmp_path / "s.yaml"))
    d = default_trial(space, "classification")
    assert d["fusion.type"] == "attention" and "optimizer.type" not in d  # one choice: not a parameter
    assert d["optimizer.lr"] == pytest.approx(0.1)  # 3e-3 is out of range: the geometric middle
    assert d["fusion.attention.heads"] == 1
    assert default_trial(load_space("image_text"), "multilabel")["loss.type"] == "cross_entropy"  # no bce offered


def test_a_space_with_one_fusion_starts_from_its_default_only(tmp_path):
    text = SPACE.raw_text()
    doc = yaml.safe_load(text)
    doc["fusion"]["choices"] = {"mid": doc["fusion"]["choices"]["mid"]}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    first = first_trials(load_space(None, str(path)), "classification", 12, 0)
    assert len(first) == 1 and first[0]["encoder.text"] == "tfidf"  # only the hand-built default

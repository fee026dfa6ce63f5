"""Search settings: flags over the space file, samplers and schedulers by name."""

from __future__ import annotations

import optuna
import pytest
import yaml

from autofusion.errors import ConfigError
from autofusion.search import (SAMPLERS, SCHEDULERS, SearchOptions, fusion_first_trials, make_sampler, make_scheduler,
                               resolve_settings, trial_seed)
from autofusion.spaces import define_by_run, load_space

SPACE = load_space("image_text")


def test_flags_override_the_space_file():
    s = resolve_settings(SPACE, SearchOptions(num_trials=3, max_epochs=2, seed=5, sampler="random"),
                         "classification", cpus_available=4)
    assert (s.num_trials, s.max_epochs, s.seed, s.sampler) == (3, 2, 5, "random")
    assert s.scheduler == SPACE.file.search.scheduler and s.metric == "val_accuracy" and s.mode == "max"
    assert s.concurrency == 3  # 4 CPUs / 1 per trial, capped at the number of trials
    assert s.grace_period <= s.max_epochs


def test_objectives_switch_to_fifo_and_nsga2_gets_one():
    s = resolve_settings(SPACE, SearchOptions(objectives=("latency_ms",)), "classification", 2)
    assert s.scheduler == "fifo" and s.objectives == ("latency_ms",)
    s = resolve_settings(SPACE, SearchOptions(sampler="nsga2"), "classification", 2)
    assert s.objectives == ("num_params",) and s.scheduler == "fifo"


@pytest.mark.parametrize("opts,message", [
    (SearchOptions(metric="val_rmse"), "unknown metric 'val_rmse' for classification targets; known: "
                                       "val_loss, val_accuracy, val_f1_macro"),
    (SearchOptions(objectives=("speed",)), "unknown objective 'speed'; known: num_params, latency_ms"),
    (SearchOptions(cpus_per_trial=1.5), "--cpus-per-trial above 1 must be a whole number, but got 1.5"),
    (SearchOptions(gpus_per_trial=1.5), "--gpus-per-trial above 1 must be a whole number, but got 1.5"),
])
def test_bad_settings(opts, message):
    with pytest.raises(ConfigError) as err:
        resolve_settings(SPACE, opts, "classification", 2)
    assert str(err.value) == message


def test_a_metric_that_does_not_fit_the_target_is_named():
    with pytest.raises(ConfigError, match="unknown metric 'val_accuracy' for regression targets; known: val_loss, "
                                          "val_rmse, val_mae, val_r2"):
        resolve_settings(SPACE, SearchOptions(), "regression", 2)
    s = resolve_settings(SPACE, SearchOptions(metric="val_rmse"), "regression", 2)
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
    s = resolve_settings(SPACE, SearchOptions(scheduler=name), "classification", 2)
    assert make_scheduler(name, s) is not None


def test_trial_seed_depends_on_config_and_seed_only():
    a = {"fusion.type": "mid", "optimizer.lr": 0.01}
    assert trial_seed(a, 0) == trial_seed(dict(reversed(list(a.items()))), 0)
    assert trial_seed(a, 0) != trial_seed(a, 1)
    assert trial_seed(a, 0) != trial_seed({**a, "optimizer.lr": 0.02}, 0)


def test_a_new_search_tries_each_fusion_first_and_the_sampler_fills_in_the_rest():
    fusions = set(SPACE.file.fusion.choices)
    first = fusion_first_trials(SPACE, 12, 0)
    assert [set(p) for p in first] == [{"fusion.type"}] * len(fusions)
    assert {p["fusion.type"] for p in first} == fusions  # each once
    assert first == fusion_first_trials(SPACE, 12, 0) and first != fusion_first_trials(SPACE, 12, 1)
    assert len(fusion_first_trials(SPACE, 3, 0)) == 2  # at most two thirds of a small budget
    # Enqueued partially, the sampler samples everything else (conditional parameters included).
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


def test_a_space_with_one_fusion_gets_no_fusion_first_trials(tmp_path):
    text = SPACE.raw_text()
    doc = yaml.safe_load(text)
    doc["fusion"]["choices"] = {"mid": doc["fusion"]["choices"]["mid"]}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert fusion_first_trials(load_space(None, str(path)), 12, 0) == []

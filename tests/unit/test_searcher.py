"""What Optuna is told about trials that ASHA stopped and trials that finished."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from autofusion.search.searcher import ScheduledOptunaSearch
from autofusion.spaces import define_by_run, load_space

SPACE = load_space("image_text")


def _run(searcher: ScheduledOptunaSearch, trial_id: str, values: list[float], planned: int = 8) -> None:
    searcher.suggest(trial_id)
    result: dict = {}
    for epoch, v in enumerate(values, 1):
        result = {"val_accuracy": v, "training_iteration": epoch, "planned_epochs": float(planned)}
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result=result)


def test_stopped_trials_are_pruned_and_finished_ones_scored_by_their_best_epoch():
    searcher = ScheduledOptunaSearch(space=define_by_run(SPACE, 8), metric="val_accuracy", mode="max",
                                     sampler=optuna.samplers.RandomSampler(seed=0))
    _run(searcher, "stopped", [0.3, 0.6])  # ASHA stopped it at its 2-epoch rung
    _run(searcher, "finished", [0.4, 0.9, 0.8, 0.7], planned=4)
    _run(searcher, "short", [0.5, 0.55], planned=2)  # planned 2 epochs and ran them
    stopped, finished, short = searcher._ot_study.trials
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {1: 0.3, 2: 0.6}
    assert finished.state == TrialState.COMPLETE and finished.value == 0.9  # best epoch, not the last (0.7)
    assert short.state == TrialState.COMPLETE and short.value == 0.55


def test_a_minimised_metric_keeps_its_lowest_epoch():
    searcher = ScheduledOptunaSearch(space=define_by_run(SPACE, 8), metric="val_accuracy", mode="min",
                                     sampler=optuna.samplers.RandomSampler(seed=0))
    _run(searcher, "t", [0.5, 0.2, 0.4], planned=3)
    assert searcher._ot_study.trials[0].value == 0.2


def test_a_failed_trial_is_told_failed():
    searcher = ScheduledOptunaSearch(space=define_by_run(SPACE, 8), metric="val_accuracy", mode="max",
                                     sampler=optuna.samplers.RandomSampler(seed=0))
    searcher.suggest("t")
    searcher.on_trial_result("t", {"val_accuracy": 0.5, "training_iteration": 1, "planned_epochs": 8.0})
    searcher.on_trial_complete("t", result=None, error=True)
    assert searcher._ot_study.trials[0].state == TrialState.FAIL


def test_the_trial_that_ran_the_hand_built_default_is_found():
    from autofusion.search.handbuilt import default_trial
    from autofusion.search.records import TrialRecord
    from autofusion.search.selection import matching_trial

    default = default_trial(SPACE, "classification")
    sampled = {k: v for k, v in default.items() if not k.startswith("fusion.")} | {"fusion.type": "attention",
                                                                                 "fusion.attention.heads": 2}
    same = {k: v for k, v in default.items() if k.split(".")[0] not in ("encoder", "fusion", "loss", "optimizer")
            or k in ("encoder.image", "encoder.text", "fusion.type", "loss.type", "optimizer.type", "optimizer.lr",
                     "optimizer.weight_decay", "encoder.image.small_cnn.width", "encoder.text.embedding_bag.dim")}
    trials = [TrialRecord("a", 1, sampled), TrialRecord("b", 2, {**same, "train.epochs": 8}),
              TrialRecord("c", 3, {**same, "optimizer.lr": 0.004})]
    assert matching_trial(trials, default).number == 2  # constants (train.epochs) are not in the space's params
    assert matching_trial(trials[:1], default) is None


def test_a_trial_its_early_stopping_ended_is_finished_not_pruned():
    searcher = ScheduledOptunaSearch(space=define_by_run(SPACE, 8), metric="val_accuracy", mode="max",
                                     sampler=optuna.samplers.RandomSampler(seed=0))
    searcher.suggest("t")
    for epoch, v in enumerate([0.6, 0.7, 0.65], 1):
        searcher.on_trial_result("t", {"val_accuracy": v, "training_iteration": epoch, "planned_epochs": 30.0})
    searcher.on_trial_complete("t", result={"val_accuracy": 0.65, "training_iteration": 3, "planned_epochs": 30.0,
                                            "converged": 1.0})
    assert (searcher._ot_study.trials[0].state, searcher._ot_study.trials[0].value) == (TrialState.COMPLETE, 0.7)


def _lagged(seed: int = 0, startup: int = 2) -> ScheduledOptunaSearch:
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True,
                                         constant_liar=True)
    return ScheduledOptunaSearch(space=define_by_run(SPACE, 8), metric="val_accuracy", mode="max", sampler=sampler,
                                 lag=2)


def _score(config: dict) -> float:
    """A deterministic result of a configuration (what a seeded trial gives)."""
    return round(float(config["optimizer.lr"]) * 50 + (config["fusion.type"] == "gated") * 0.3, 6)


def _simulate(searcher: ScheduledOptunaSearch, n: int, later_first: bool) -> list[dict]:
    """Two trials at a time; each time both run, either the earlier or the later one finishes first.
    A suggestion that has to wait (None) waits for the other running trial."""
    configs: dict[str, dict] = {}
    running: list[str] = []
    started = 0

    def finish(tid: str) -> None:
        running.remove(tid)
        searcher.on_trial_result(tid, {"val_accuracy": _score(configs[tid]), "training_iteration": 1,
                                       "planned_epochs": 1.0})
        searcher.on_trial_complete(tid, {"val_accuracy": _score(configs[tid]), "training_iteration": 1,
                                         "planned_epochs": 1.0})

    while started < n or running:
        while started < n and len(running) < 2:
            tid = f"t{started}"
            config = searcher.suggest(tid)
            if config is None:
                break
            configs[tid] = {k: v for k, v in config.items()}
            running.append(tid)
            started += 1
        finish(running[-1] if later_first and len(running) > 1 else running[0])
    searcher.flush()
    return [configs[f"t{i}"] for i in range(n)]


@pytest.mark.parametrize("startup", [1, 2, 4])
def test_the_sampler_sees_the_same_history_whatever_finishes_first(startup):
    in_order = _simulate(_lagged(startup=startup), 12, later_first=False)
    reversed_ = _simulate(_lagged(startup=startup), 12, later_first=True)
    assert in_order == reversed_  # the same trials, whichever of two running trials ended first
    told = _lagged(startup=1)
    assert told.suggest("a") is not None and told.suggest("b") is not None
    told.on_trial_complete("b", {"val_accuracy": 0.5, "training_iteration": 1, "planned_epochs": 1.0})
    assert told.suggest("c") is None  # "a" is still running: its result comes before "c" is sampled
    assert [t.state for t in told._ot_study.trials] == [TrialState.RUNNING, TrialState.RUNNING]
    told.on_trial_complete("a", {"val_accuracy": 0.4, "training_iteration": 1, "planned_epochs": 1.0})
    assert told.suggest("c") is not None  # "a" told; "b" (suggested after "a") is held back still
    assert [t.state for t in told._ot_study.trials][:2] == [TrialState.COMPLETE, TrialState.RUNNING]
    told.flush()
    assert [t.state for t in told._ot_study.trials][:2] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_a_suggestion_that_cannot_depend_on_the_history_does_not_wait():
    """TPE's random start-up trials, and a random sampler's every trial, start while the trial
    two before them still runs; TPE's first model-based trial waits for it."""
    tpe = _lagged(startup=3)
    assert tpe.suggest("a") is not None and tpe.suggest("b") is not None
    tpe.on_trial_complete("b", {"val_accuracy": 0.5, "training_iteration": 1, "planned_epochs": 1.0})
    assert tpe.suggest("c") is not None  # "a" still runs, but "c" is drawn at random whatever it scores
    tpe.on_trial_complete("c", {"val_accuracy": 0.5, "training_iteration": 1, "planned_epochs": 1.0})
    assert tpe.suggest("d") is not None  # at most 2 told before "d": still TPE's start-up (3)
    tpe.on_trial_complete("d", {"val_accuracy": 0.5, "training_iteration": 1, "planned_epochs": 1.0})
    assert tpe.suggest("e") is None  # 3 told before "e": the model's first; "a"'s result comes first
    assert [t.state for t in tpe._ot_study.trials][:4] == [TrialState.RUNNING] * 4  # told in order: none yet
    rnd = ScheduledOptunaSearch(space=define_by_run(SPACE, 8), metric="val_accuracy", mode="max",
                                sampler=optuna.samplers.RandomSampler(seed=0), lag=2)
    for tid in "abcdef":
        assert rnd.suggest(tid) is not None  # never waits, though none has finished


def test_finished_trials_a_study_already_holds_count_toward_tpes_start_up():
    """A resumed or warm-started study's finished trials count: with 2 of them and a start-up
    count of 3, TPE's next suggestions may be model-based, so they wait as before."""
    tpe = _lagged(startup=3)
    for value in (0.3, 0.6):
        tpe._ot_study.add_trial(optuna.trial.create_trial(
            params={"optimizer.lr": 0.001}, distributions={"optimizer.lr": optuna.distributions.FloatDistribution(
                1e-4, 1e-2, log=True)}, value=value))
    assert tpe.suggest("a") is not None and tpe.suggest("b") is not None
    tpe.on_trial_complete("b", {"val_accuracy": 0.5, "training_iteration": 1, "planned_epochs": 1.0})
    assert tpe.suggest("c") is None  # 2 held + "a" told would make 3: "a" comes first

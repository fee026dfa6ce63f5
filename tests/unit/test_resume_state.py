"""Resume bookkeeping without a search: trials rebuilt from child runs written straight into a
sqlite MLflow store, the saved options, and the Optuna study's reconciliation and warm start."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autofusion import tracking
from autofusion.errors import ConfigError
from autofusion.home import state_dir
from autofusion.search import resume
from autofusion.search.records import SearchOptions
from autofusion.search.runs import read_trials
from autofusion.spaces import load_space
from autofusion.spaces.distributions import space_distributions

SPACE = load_space("image_text")


def _child(c, exp: str, parent: str, number: int, status: str, history: list[dict[str, float]] | None = None,
           config: bool = True, **tags: str) -> str:
    """A trial's run as the search's writer leaves it (tags, per-epoch metrics, end status)."""
    cfg = {"fusion.type": "mid", "encoder.image": "small_cnn", "optimizer.lr": 0.003}
    all_tags = {tracking.PARENT_TAG: parent, tracking.KIND_TAG: "trial", "autofusion.trial_id": f"t{number}",
                "autofusion.trial_number": str(number), "autofusion.planned_epochs": "4", **tags}
    if config:
        all_tags["autofusion.config"] = json.dumps(cfg)
    rid = c.create_run(exp, tags=all_tags).info.run_id
    for step, metrics in enumerate(history or [], 1):
        for k, v in metrics.items():
            c.log_metric(rid, k, v, step=step)
    if status != "RUNNING":
        c.set_terminated(rid, status=status)
    return rid


@pytest.fixture
def search(sqlite_uri):
    """A search run with a finished, a failed, a cut-off (running), a killed and a config-less child."""
    c = tracking.client(sqlite_uri)
    exp = tracking.experiment_id(sqlite_uri, "demo")
    parent = c.create_run(exp, tags={tracking.KIND_TAG: "search"}).info.run_id
    c.log_param(parent, "search.metric", "val_accuracy")
    c.log_param(parent, "search.mode", "max")
    hist = [{"val_accuracy": 0.5, "epoch_seconds": 1.5, "num_params": 100.0},
            {"val_accuracy": 0.75, "epoch_seconds": 2.0, "num_params": 100.0},
            {"val_accuracy": 0.25, "epoch_seconds": 1.0, "num_params": 100.0}]
    runs = {
        "finished": _child(c, exp, parent, 1, "FINISHED", hist, **{
            "autofusion.status": "pruned", "autofusion.epochs_run": "3", "autofusion.best_epoch": "2",
            "autofusion.checkpoint": "/ckpt/1"}),
        "failed": _child(c, exp, parent, 2, "FAILED", hist[:1], **{
            "autofusion.status": "failed", "autofusion.epochs_run": "1", "autofusion.error": "ValueError: boom"}),
        "running": _child(c, exp, parent, 3, "RUNNING", hist[:2], **{"autofusion.status": "running"}),
        "killed": _child(c, exp, parent, 4, "KILLED", hist[:1], **{"autofusion.status": "interrupted"}),
        "no_config": _child(c, exp, parent, 5, "FINISHED", config=False),
    }
    c.log_metric(runs["finished"], "best_val_accuracy", 0.75)
    c.log_metric(runs["failed"], "best_val_accuracy", 0.5)
    return sqlite_uri, exp, parent, runs


def test_done_trials_rebuilds_finished_trials_and_deletes_cut_off_runs(search):
    uri, exp, parent, runs = search
    records = tracking.retry(lambda: resume.done_trials(uri, exp, parent, "val_accuracy", "max"))
    assert set(records) == {"t1", "t2"}
    done, failed = records["t1"], records["t2"]
    assert (done.number, done.status, done.run_id, done.checkpoint, done.planned_epochs) == (
        1, "pruned", runs["finished"], "/ckpt/1", 4)
    assert [h["val_accuracy"] for h in done.history] == [0.5, 0.75, 0.25]
    assert (done.best_value, done.best_epoch, done.seconds, done.num_params) == (0.75, 2, 4.5, 100)
    assert done.config == {"fusion.type": "mid", "encoder.image": "small_cnn", "optimizer.lr": 0.003}
    assert (failed.status, failed.error, failed.best_value, len(failed.history)) == ("failed", "ValueError: boom", 0.5, 1)
    c = tracking.client(uri)
    gone = {k for k, rid in runs.items() if c.get_run(rid).info.lifecycle_stage == "deleted"}
    assert gone == {"running", "killed", "no_config"}  # to be run again
    assert resume.done_trials(uri, exp, parent, "val_accuracy", "min")["t1"].best_epoch == 3


def test_the_trials_view_reads_every_child_run_in_one_call_each(search):
    uri, _, parent, runs = search
    trials = {t.run_id: t for t in read_trials(uri, tracking.get_run(uri, parent))}
    assert set(trials) == set(runs.values())  # nothing is deleted for a view
    done = trials[runs["finished"]]
    assert (done.best_value, done.best_epoch, len(done.history), done.num_params) == (0.75, 2, 3, 100)
    assert trials[runs["running"]].best_value is None
    assert trials[runs["no_config"]].config == {}  # no configuration tag: the params (none here)


def test_the_saved_options_come_back_with_the_space_text(tmp_path: Path):
    home = tmp_path / "home"
    opts = SearchOptions(task="image_text", num_trials=5, objectives=("num_params",), seed=3, quiet=False)
    resume.save_options(state_dir(home, "abc"), opts, SPACE)
    assert resume.load_options(home, "abc")["space_text"] == SPACE.raw_text()
    again, run_id = resume.resumed_options(SearchOptions(resume="abc", quiet=True, concurrency=2), home)
    assert run_id == "abc" and (again.num_trials, again.seed, again.objectives) == (5, 3, ("num_params",))
    assert (again.quiet, again.concurrency, again.resume, again.task) == (True, 2, "abc", None)
    assert Path(again.space).read_text() == SPACE.raw_text()  # a later edit of the file changes nothing
    with pytest.raises(ConfigError, match="--resume nope: no saved state at"):
        resume.load_options(home, "nope")
    with pytest.raises(ConfigError, match="--warm-start abc: no Optuna history at"):
        resume.warm_start_study(home, "abc")


X = {"x": optuna.distributions.FloatDistribution(0, 1), "y": optuna.distributions.FloatDistribution(0, 1)}


def _study_with_a_cut_off_trial(tmp_path: Path, enqueued: dict[str, float] | None) -> tuple[optuna.Study, dict]:
    """A journal study with one finished trial and one left RUNNING by a killed driver."""
    study = optuna.create_study(study_name="s", storage=resume.journal_storage(tmp_path / "s"), direction="maximize")
    study.tell(study.ask(X), 0.5)
    if enqueued is not None:
        study.enqueue_trial(enqueued)
    return study, study.ask(X).params


def test_a_cut_off_first_trial_is_failed_and_queued_again(tmp_path: Path):
    study, params = _study_with_a_cut_off_trial(tmp_path, {"x": 0.25})  # like first_trials: some params fixed
    assert resume.reconcile_study(study) == 1
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].system_attrs["fixed_params"] == params  # the same configuration runs anew
    assert resume.reconcile_study(study) == 0  # nothing is left RUNNING


def test_a_cut_off_sampled_trial_is_queued_again(tmp_path: Path):
    study, params = _study_with_a_cut_off_trial(tmp_path, None)
    resume.reconcile_study(study)
    assert [t.state for t in study.get_trials(deepcopy=False)][-1] == TrialState.WAITING


def test_a_warm_start_copies_only_the_trials_that_fit_the_space():
    dists = space_distributions(SPACE)
    fits = {"fusion.type": "gated", "optimizer.lr": 0.001}
    source = optuna.create_study(direction="maximize")
    for params, state, value in [(fits, TrialState.COMPLETE, 0.9), (fits, TrialState.PRUNED, None),
                                 ({"fusion.type": "gated", "optimizer.lr": 0.5}, TrialState.COMPLETE, 0.8),
                                 ({"unknown.param": 1}, TrialState.COMPLETE, 0.7), (fits, TrialState.FAIL, None)]:
        d = {k: dists.get(k, optuna.distributions.IntDistribution(0, 2)) for k in params}
        if "optimizer.lr" in params:
            d["optimizer.lr"] = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
        source.add_trial(optuna.trial.create_trial(params=params, distributions=d, value=value, state=state,
                                                   intermediate_values={1: 0.5}))
    study = optuna.create_study(direction="maximize")
    assert resume.warm_start(study, source, SPACE) == 2  # the complete and the pruned one that fit
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    two = optuna.create_study(directions=["maximize", "minimize"])
    assert resume.warm_start(two, source, SPACE) == 0  # one value does not fit two objectives

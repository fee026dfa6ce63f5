"""Search options end to end: the same seed gives the same trials (two at a time), a multi-objective search
gives a Pareto front, and warm start seeds the sampler. (A search through ``--address`` on a
``ray start --head`` cluster: tests/integration/test_cluster.py.)"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from autofusion import tracking
from autofusion.home import state_dir
from autofusion.search import resume
from autofusion.search.driver import run_search
from autofusion.search.records import SearchOptions

pytestmark = pytest.mark.slow


def _opts(tmp_path: Path, **kw) -> SearchOptions:
    base = dict(task="image_text", num_trials=2, max_epochs=1, concurrency=1, demo_samples=48, quiet=True,
                tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", home=str(tmp_path / ".autofusion"))
    base.update(kw)
    return SearchOptions(**base)


def _signature(result):
    return [(t.config, [round(h["val_loss"], 5) for h in t.history]) for t in result.trials]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, ray_local):
    """One search with seed 7, two trials at a time, shared: run again for reproducibility, and
    warm-started from."""
    root = tmp_path_factory.mktemp("options")
    return run_search(_opts(root, seed=7, experiment="a", num_trials=4, concurrency=2)), root


def test_same_seed_same_trials_and_metrics(seeded):
    """Two trials at a time, which one ends first varies from run to run; the sampler is told
    results in the order it suggested them (search/searcher.py), so the same trials run."""
    a, root = seeded
    b = run_search(_opts(root, seed=7, experiment="b", num_trials=4, concurrency=2))
    assert a.settings.concurrency == b.settings.concurrency == 2 and a.settings.scheduler == "fifo"
    assert _signature(a) == _signature(b)  # another seed giving other trials: test_search_settings
    assert (a.best.config, a.test_metrics) == (b.best.config, b.test_metrics)


def test_multi_objective_search_reports_a_pareto_front(tmp_path, ray_local):
    res = run_search(_opts(tmp_path, num_trials=3, sampler="nsga2", objectives=("num_params",), concurrency=2))
    assert res.settings.scheduler == "fifo" and res.pareto
    for t in res.pareto:  # nobody dominates a front member
        assert not any(o.best_value >= t.best_value and o.num_params <= t.num_params and
                       (o.best_value > t.best_value or o.num_params < t.num_params) for o in res.trials)
    arts = {a.path for a in tracking.client(res.tracking_uri).list_artifacts(res.parent_run_id)}
    assert "pareto_front.json" in arts


def test_warm_start_copies_the_finished_trials(seeded):
    first, root = seeded
    second = run_search(_opts(root, experiment="second", warm_start=first.parent_run_id, seed=1))
    home = root / ".autofusion"
    src = optuna.load_study(study_name=first.parent_run_id,
                            storage=resume.journal_storage(state_dir(home, first.parent_run_id)))
    dst = optuna.load_study(study_name=second.parent_run_id,
                            storage=resume.journal_storage(state_dir(home, second.parent_run_id)))
    done = [t for t in src.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(dst.trials) == len(done) + 2
    assert [t.params for t in dst.trials[:len(done)]] == [t.params for t in done]
    assert len(second.trials) == 2  # warm-start trials inform the sampler; they are not MLflow runs

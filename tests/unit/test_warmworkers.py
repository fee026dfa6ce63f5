"""Warm trial processes (search/warmworkers.py): the local Ray's settings, when they pay, and
Tune's trial actors made without the ``runtime_env`` that would keep them off the warm workers."""

from __future__ import annotations

import os

import pytest

from autofusion.search import warmworkers
from autofusion.search.records import SearchOptions, Settings
from autofusion.search.settings import fit_to_cluster, planned_concurrency
from autofusion.spaces.schema import SearchSettings


@pytest.fixture
def fresh_env(monkeypatch):
    """Tune's variables and the remembered start undone after the test."""
    from ray.tune.execution import class_cache

    saved = {key: os.environ.get(key) for key in class_cache.DEFAULT_ENV_VARS}
    for key in saved:
        os.environ.pop(key, None)
    monkeypatch.setattr(warmworkers, "_started_env", None)
    yield
    for key, value in saved.items():  # local_system_config set them in this process
        os.environ.pop(key, None)
        if value is not None:
            os.environ[key] = value


def _actor_runtime_env(actor_cls) -> object:
    return actor_cls._default_options.get("runtime_env")


def test_a_local_start_gives_its_workers_tunes_variables_and_preloads_the_trial(fresh_env):
    from ray.tune.execution import class_cache

    assert not warmworkers.inherited(warmworkers._tune_env_vars())  # no Ray started here yet
    config = warmworkers.local_system_config()
    assert {"ray.tune", "autofusion.search.trainable", "torch._dynamo"} <= set(config["preload_python_modules"])
    assert config["idle_worker_killing_time_threshold_ms"] >= 60_000
    for key, value in class_cache.DEFAULT_ENV_VARS.items():
        assert os.environ[key] == value  # set before Ray starts: its workers inherit them
    assert warmworkers.inherited(warmworkers._tune_env_vars())
    assert not warmworkers.inherited({"PL_DISABLE_FORK": "0"})
    warmworkers.forget_local_start()
    assert not warmworkers.inherited(warmworkers._tune_env_vars())


def test_trial_actors_carry_no_runtime_env_only_when_the_workers_have_its_variables(fresh_env):
    from ray.tune.execution.class_cache import _ActorClassCache

    class Trainable:
        pass

    with warmworkers.plain_trial_actors():  # no Ray of this process's: Tune's own actors
        assert _actor_runtime_env(_ActorClassCache().get(Trainable)) == {"env_vars": {"PL_DISABLE_FORK": "1"}}
    warmworkers.local_system_config()
    with warmworkers.plain_trial_actors():
        cache = _ActorClassCache()
        plain = cache.get(Trainable)
        assert _actor_runtime_env(plain) is None
        assert cache.get(Trainable) is plain  # registered once, as Tune's cache does
    assert _actor_runtime_env(_ActorClassCache().get(Trainable)) is not None  # Tune's own after the block


@pytest.mark.parametrize(("concurrency", "cpus", "warm"), [(2, 2.0, True), (4, 2.0, True), (1, 2.0, False),
                                                            (8, 64.0, False)])
def test_warm_workers_pay_only_when_every_idle_worker_holds_a_trial(concurrency, cpus, warm):
    assert warmworkers.pays(concurrency, cpus) is warm


@pytest.mark.parametrize(("flags", "section", "cpus"), [
    ({}, {}, 2.0),
    ({"cpus_per_trial": 2}, {}, 8.0),
    ({"concurrency": 3}, {}, 2.0),
    ({}, {"concurrency": 5, "num_trials": 4}, 16.0),
    ({"num_trials": 1}, {}, 4.0),
    ({"cpus_per_trial": 0.5}, {"num_trials": 20}, 2.0),
])
def test_the_planned_concurrency_is_what_the_cluster_fit_settles_on(flags, section, cpus):
    s = SearchSettings.model_validate(section)
    opts = SearchOptions(**flags)
    settings = Settings(num_trials=opts.num_trials or s.num_trials, max_epochs=1,
                        concurrency=min(opts.concurrency or s.concurrency or 0, opts.num_trials or s.num_trials),
                        seed=0, sampler="tpe", scheduler="fifo", metric="val_accuracy", mode="max",
                        objectives=(), time_budget=None, cpus_per_trial=opts.cpus_per_trial or s.cpus_per_trial,
                        gpus_per_trial=0.0, grace_period=1)
    assert planned_concurrency(s, opts, cpus) == fit_to_cluster(settings, {"CPU": cpus}).concurrency


def test_a_search_gets_warm_workers_only_on_a_local_ray_whose_idle_workers_its_trials_all_take(monkeypatch):
    from autofusion.search import raystart

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cpus = raystart.local_cpus()
    gpus = raystart._local_resources().get("GPU", 0.0)
    assert raystart.warm_pays(None, lambda n: int(n))  # as many trials at once as CPUs
    assert not raystart.warm_pays(None, lambda n: max(1, int(n) - 1)) or cpus < 2
    assert not raystart.warm_pays("127.0.0.1:6379", lambda n: int(n))  # a cluster's workers are its own
    # a trial per GPU: as many at once as GPUs, not CPUs (none here without one)
    assert raystart.warm_pays(None, lambda n: int(n), gpus_per_trial=1.0) is (gpus >= cpus)

"""Tune's cache of idle trial actors as the search sets it up: up to ``keep`` actors stay
while no trial waits (the searcher holds suggestions back), where Tune's own keeps one; they
go when Tune flushes them for good (the search is over)."""

from __future__ import annotations

from ray.tune.execution import tune_controller
from ray.tune.utils.object_cache import _ObjectCache

from autofusion.search.tuner import IdleActors, keeping_idle_actors

ONE_CPU = "1 CPU"  # Tune keys the cache by the trial's resources


def _cache(keep: int) -> IdleActors:
    cache = IdleActors(may_keep_one=True)
    cache.keep = keep
    return cache


def test_two_idle_actors_stay_while_no_trial_waits_where_tune_keeps_one():
    tune_own = _ObjectCache(may_keep_one=True)
    assert tune_own.cache_object(ONE_CPU, "a") and not tune_own.cache_object(ONE_CPU, "b")
    cache = _cache(2)
    assert cache.cache_object(ONE_CPU, "a") and cache.cache_object(ONE_CPU, "b")
    assert not cache.cache_object(ONE_CPU, "c")  # no more than keep
    assert list(cache.flush_cached_objects()) == []  # Tune's end-of-step flush keeps them
    assert cache.pop_cached_object(ONE_CPU) == "a"  # the next trial reuses one


def test_a_waiting_trial_of_other_resources_and_the_search_end_flush_them():
    cache = _cache(2)
    cache.cache_object(ONE_CPU, "a")
    cache.cache_object(ONE_CPU, "b")
    cache.increase_max("2 CPUs")  # a trial waits for a bigger actor: these would hold its CPUs
    assert sorted(cache.flush_cached_objects()) == ["a", "b"]
    cache.decrease_max("2 CPUs")
    cache.cache_object(ONE_CPU, "c")
    assert list(cache.flush_cached_objects(force_all=True)) == ["c"]  # the search is over
    assert cache.num_cached_objects == 0


def test_the_controllers_made_in_the_block_get_it_and_tune_its_own_after():
    with keeping_idle_actors(3):
        cache = tune_controller._ObjectCache(may_keep_one=True)
        assert isinstance(cache, IdleActors) and cache.keep == 3
    assert tune_controller._ObjectCache is _ObjectCache

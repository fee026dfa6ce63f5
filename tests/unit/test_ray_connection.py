"""Which Ray a search uses, the token it would send, and the resource check that stops a
search no node could ever run (no Ray started here: node records are plain dicts)."""

from __future__ import annotations

import pytest

from autofusion.errors import ClusterError
from autofusion.search import cluster
from autofusion.search.cluster import (
    GIB,
    check_trial_resources,
    resolve_address,
    token_source,
)


def _node(cpus: float, gpus: float = 0.0, mem_gib: float = 8.0, alive: bool = True) -> dict:
    res = {"CPU": cpus, "memory": mem_gib * GIB, "object_store_memory": GIB}
    if gpus:
        res["GPU"] = gpus
    return {"Alive": alive, "Resources": res}


def test_a_trial_that_fits_one_node_passes():
    check_trial_resources(2, 0, nodes=[_node(2)])
    check_trial_resources(4, 1, memory_gib=6, nodes=[_node(64), _node(8, 1)])
    check_trial_resources(0.5, 0.25, nodes=[_node(1, 1)])


def test_too_many_cpus_says_what_was_asked_what_the_largest_node_has_and_what_to_pass():
    with pytest.raises(ClusterError) as e:
        check_trial_resources(64, 0, nodes=[_node(2), _node(8), _node(16, alive=False)])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("--cpus-per-trial 64: each trial asks for 64 CPUs but the largest node of this Ray "
                          "cluster has 8 CPUs, so no trial could start; pass --cpus-per-trial 8 (or less)"), msg


def test_a_gpu_on_a_cluster_without_gpus():
    with pytest.raises(ClusterError, match="^--gpus-per-trial 1.0: this Ray cluster has no GPU, so no trial could "
                                           "start; leave out --gpus-per-trial, or pass --address of a cluster with GPUs$"):
        check_trial_resources(1, 1.0, nodes=[_node(2)])


def test_too_many_gpus_and_too_much_memory():
    with pytest.raises(ClusterError) as e:
        check_trial_resources(1, 4, memory_gib=100, nodes=[_node(8, 2, mem_gib=12.35)])
    msg = str(e.value)
    assert msg.startswith("--gpus-per-trial 4 and --memory-per-trial 100: ")
    assert "4 GPUs and 100.0 GiB of memory" in msg and "2 GPUs and 12.3 GiB of memory" in msg
    assert "pass --gpus-per-trial 2 (or less) and pass --memory-per-trial 12.3 (or less)" in msg


def test_resources_that_exist_but_never_on_one_node():
    with pytest.raises(ClusterError, match="no single node .* has all of it .*64 CPUs \\+ no GPU, 4 CPUs \\+ 1 GPU"):
        check_trial_resources(8, 1, nodes=[_node(64), _node(4, 1)])


def test_fractional_cpus_above_one_are_rounded_down_in_the_advice():
    with pytest.raises(ClusterError, match="--cpus-per-trial 2 "):
        check_trial_resources(4, nodes=[_node(2.5)])


def test_no_address_means_a_local_ray_even_with_a_recorded_cluster(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")  # a `ray start` long gone
    assert resolve_address(None) == (None, "RAY_ADDRESS")
    assert resolve_address("local")[0] is None
    assert resolve_address("auto") == ("127.0.0.1:1", "--address")  # asked for: the recorded one, to be probed


def test_ray_address_is_used_when_no_flag_is_given(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert resolve_address(None) == ("10.0.0.5:6379", "RAY_ADDRESS")
    assert resolve_address("127.0.0.1:6379") == ("127.0.0.1:6379", "--address")  # the flag wins


def test_auto_without_a_recorded_cluster_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ClusterError, match="no Ray cluster was started with `ray start`"):
        resolve_address("auto")


def test_a_dead_ray_address_fails_in_seconds_naming_the_variable(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster .* unset RAY_ADDRESS"):
        cluster.probe_address(None)


def test_token_sources_in_rays_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert token_source() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc")
    assert token_source() == "~/.ray/auth_token"
    (tmp_path / "tok").write_text("def")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert token_source().startswith("RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "xyz")
    assert token_source() == "RAY_AUTH_TOKEN"


def test_an_unreadable_token_path_is_one_line_not_an_abort(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ClusterError, match="RAY_AUTH_TOKEN_PATH=.*cannot read the token"):
        token_source()

"""The checks a search runs before it reads the data: a trial no node can hold and pretrained
weights that are not on this machine stop it with one line; no Ray is started for them (a
local Ray is judged by Ray's own detection of this machine)."""

from __future__ import annotations

import os

import pytest
import yaml

from autofusion.errors import ClusterError, ConfigError
from autofusion.search.checks import check_resources, check_weights, space_search
from autofusion.search.raystart import planned_nodes
from autofusion.search.records import SearchOptions
from autofusion.spaces import load_space
from autofusion.spaces.load import SPACES_DIR
from autofusion.spaces.schema import SearchSettings


def _space_file(tmp_path, **changes) -> str:
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    for section, value in changes.items():
        raw[section] = {**raw.get(section, {}), **value}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_the_planned_local_node_is_this_machine_as_ray_sees_it(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (node,) = planned_nodes(None)
    cpus = node["Resources"]["CPU"]
    assert 1 <= cpus <= (os.cpu_count() or 1) and node["Resources"]["memory"] > 0


def test_more_cpus_per_trial_than_any_node_is_refused_by_the_flag_and_by_the_space_file(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ClusterError, match=r"^--cpus-per-trial 64.0: each trial asks for 64 CPUs but the largest node"):
        check_resources(SearchOptions(cpus_per_trial=64.0), SearchSettings())
    path = _space_file(tmp_path, search={"cpus_per_trial": 64})
    assert space_search(None, path).cpus_per_trial == 64  # read without loading the whole space
    with pytest.raises(ClusterError, match="each trial asks for 64 CPUs"):
        check_resources(SearchOptions(space=path), space_search(None, path))
    check_resources(SearchOptions(space=path, cpus_per_trial=1.0), space_search(None, path))  # the flag wins


def test_a_search_section_that_does_not_validate_is_left_to_the_full_load(tmp_path):
    path = _space_file(tmp_path, search={"cpus_per_trial": -1})
    assert space_search(None, path) is None
    with pytest.raises(ConfigError, match="cpus_per_trial"):
        load_space(space=path)


def test_pretrained_weights_that_are_not_here_stop_it_before_the_data(tmp_path):
    missing = tmp_path / "no-such-model"
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["encoders"]["text"] = {"choices": {"tfidf": {}, "hf_text": {"model": str(missing)}}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=f"pretrained weights '{missing}' are not"):
        check_weights(load_space(space=path))
    check_weights(load_space("image_text"))  # the built-in space names only weights it found here

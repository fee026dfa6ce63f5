"""The checks a search runs before it reads the data, in the order a user fixes them: each
trial's resources against the cluster, then (in the driver) the store, then the pretrained
weights. A mistake in any of them stops the search in about a second, with one line, before
a file is decoded, a feature fitted or Ray started."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from autofusion.lazy import LazyImport
from autofusion.search.cluster import check_trial_resources
from autofusion.search.raystart import planned_nodes
from autofusion.search.records import SearchOptions
from autofusion.search.settings import trial_resources
from autofusion.spaces.load import read_space, resolve_space_path
from autofusion.spaces.schema import Distribution, SearchSettings
from autofusion.trial import PAIR

features = LazyImport("autofusion.models.extractors")  # torch: only for the weights check
models = LazyImport("autofusion.models")


def check_resources(opts: SearchOptions, search: SearchSettings | None) -> None:
    """Fails when no node of the cluster the search will use (a new local Ray: this machine)
    could hold one trial; ``search`` is the space file's ``search`` section (None: the flags
    alone are checked). Ray is not started: its own detection of this machine, or the
    cluster's GCS, says what the nodes hold (the driver checks again once Ray runs)."""
    cpus, gpus, memory = trial_resources(search or SearchSettings(), opts)
    nodes = planned_nodes(opts.address)
    if nodes is not None:
        check_trial_resources(cpus, gpus, memory, nodes=nodes)


def space_search(task: str | None, space: str | None) -> SearchSettings | None:
    """The ``search`` section of a space file (its defaults for a space assembled from the data,
    neither given), read without the rest of the file, which takes longer; None when it does
    not validate (loading the whole space says why)."""
    if task is None and space is None:
        return SearchSettings()
    raw, _ = read_space(resolve_space_path(task, space))
    try:
        return SearchSettings.model_validate(raw.get("search") or {})
    except ValidationError:
        return None


def check_weights(space: Any) -> None:
    """Every pretrained encoder the space may pick finds its weights on this machine (a search
    never downloads): the one-line error names the model and the command that fetches it."""
    for m in space.modalities:
        for name, params in space.file.encoders[m].choices.items():
            if PAIR in name:  # two encoders on one input: their halves are choices of their own
                continue
            cls = models.ENCODERS[m].get(name)
            check = getattr(cls, "check_weights", None)  # torchvision's pretrained: true
            if check is not None:
                check(params)
            if getattr(cls, "pretrained", False) and getattr(cls, "extractor", None) is not None:
                consts = {k: v for k, v in params.items() if not isinstance(v, Distribution)}
                cls.extractor(m, space.prep[m].model_dump(), features.feature_params(cls, consts)).lookup()

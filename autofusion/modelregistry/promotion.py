"""Promotion: register a search's model (its kept ensemble, else its best trial's model) as a
new version, with lineage tags (search run, trial run, ensemble members, data fingerprint, the
test data it was scored on, test metrics, its served latency), and move the alias
(``champion``) to it only when it beats the current holder on the same test split, unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autofusion import tracking
from autofusion.errors import RegistryError
from autofusion.metrics import better, metric_mode
from autofusion.modelregistry.catalog import find_search
from autofusion.tracking.datasets import tested_on


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` did: the new version, and whether and why the alias moved."""

    name: str
    version: str
    alias: str
    moved: bool
    reason: str
    metric: str
    value: float | None
    previous: str | None


def _split_key(run: Any) -> str:
    """Identifies the test split: the data fingerprint, the split seed and source, and the
    group column of a grouped split."""
    p = run.data.params
    group = f":group={p['data.group']}" if p.get("data.group") else ""
    return f"{p.get('data.fingerprint', '?')}:{p.get('search.seed', '?')}:{p.get('data.split_source', '?')}{group}"


def promote(uri: str, *, task: str | None = None, search: str | None = None, name: str | None = None,
            alias: str = "champion", metric: str | None = None, force: bool = False,
            experiment: str | None = None) -> Promotion:
    """Registers the search's model (the ensemble when it kept one) and moves ``alias`` to it
    if it is better."""
    c = tracking.client(uri)
    parent = find_search(uri, task=task, search=search, experiment=experiment)
    tags, params = parent.data.tags, parent.data.params
    best_run_id = tags.get("autofusion.best_run_id")
    model_uri = tags.get("autofusion.model_uri")
    if not best_run_id or not model_uri:
        raise RegistryError(f"search {parent.info.run_id} has no best model (did every trial fail?)")
    name = name or tags.get("autofusion.task") or "autofusion"
    selection = params.get("search.metric", "val_accuracy")
    default = "test_" + selection.split("_", 1)[1]
    metric = metric or default
    # The search's mode belongs to its own metric; another metric has its own direction
    # (--metric test_f1_macro after a search on val_loss must still prefer the higher f1).
    mode = params.get("search.mode", "max") if metric == default else metric_mode(metric)
    # The run that holds the search's model and its test metrics: the search's own when it kept
    # an ensemble, else the best trial's (searches logged before ensembles have no such tag).
    model_run_id = tags.get("autofusion.model_run_id") or best_run_id
    ensemble = model_run_id == parent.info.run_id
    model_run = parent if ensemble else c.get_run(model_run_id)
    value = model_run.data.metrics.get(metric)
    if value is None:
        what = "the ensemble" if ensemble else "the best trial"
        raise RegistryError(
            f"metric {metric!r} not found on {what}; known: {', '.join(sorted(model_run.data.metrics)) or 'none'}"
        )
    _ensure_registered_model(c, name)
    tested = tested_on(parent)  # its test split, as the search logged it (tracking/datasets.py)
    lineage = {
        "autofusion.search_run_id": parent.info.run_id, "autofusion.trial_run_id": best_run_id,
        "autofusion.data_fingerprint": params.get("data.fingerprint", ""), "autofusion.split_key": _split_key(parent),
        "autofusion.metric": metric, f"autofusion.{metric}": f"{value:.6f}",
        "autofusion.task": tags.get("autofusion.task", ""),
        **{f"autofusion.{k}": f"{v:.6f}" for k, v in model_run.data.metrics.items() if k.startswith("test_")},
        **({"autofusion.ensemble_members": tags.get("autofusion.ensemble_members", "")}
           if ensemble and "autofusion.bagged" not in tags else {}),
        **({"autofusion.bagged": tags["autofusion.bagged"]} if ensemble and "autofusion.bagged" in tags else {}),
        **({"autofusion.tested_on": tested} if tested else {}),
        **{k: v for k, v in model_run.data.tags.items() if k in LATENCY_TAGS},  # measured after the search logged it
    }
    # A ``models:/<model_id>`` source must come with its model_id: a tracking server refuses it
    # otherwise ("The model_id request parameter must identify the resource that contains the source").
    model_id = logged_model_id(model_uri)
    mv = tracking.retry(lambda: c.create_model_version(name, model_uri, run_id=model_run_id, tags=lineage,
                                                       description=f"autofusion search {parent.info.run_id}",
                                                       model_id=model_id))
    moved, reason, previous = _decide(c, name, alias, lineage, metric, value, mode, force)
    if moved:
        c.set_registered_model_alias(name, alias, mv.version)
    return Promotion(name, str(mv.version), alias, moved, reason, metric, value, previous)


LATENCY_TAGS = ("autofusion.latency_p50_ms", "autofusion.latency_p95_ms", "autofusion.rows_per_s",
                "autofusion.latency_batch")


def logged_model_id(model_uri: str) -> str | None:
    """The logged model's id in ``models:/<model_id>``; None for other URIs (``runs:/``, a name@alias)."""
    prefix = "models:/"
    if not model_uri.startswith(prefix):
        return None
    rest = model_uri[len(prefix):].strip("/")
    return rest if rest and "/" not in rest and "@" not in rest else None


def _ensure_registered_model(c: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        try:
            c.create_registered_model(name, description="Registered by autofusion promote")
        except MlflowException as exc:
            raise RegistryError(f"cannot create registered model {name!r}: {str(exc).splitlines()[0]}") from None


def _decide(c: Any, name: str, alias: str, lineage: dict[str, str], metric: str, value: float, mode: str,
            force: bool) -> tuple[bool, str, str | None]:
    from mlflow.exceptions import MlflowException

    try:
        current = c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return True, f"no version held {alias!r}", None
    prev = str(current.version)
    if force:
        return True, f"forced (was version {prev})", prev
    if current.tags.get("autofusion.split_key") != lineage["autofusion.split_key"]:
        return False, (f"version {prev} was tested on another test split; compare on the same data or pass --force"), prev
    old = current.tags.get(f"autofusion.{metric}")
    if old is None:
        return False, f"version {prev} has no {metric}; pass --force to replace it", prev
    new = round(value, 6)  # tags hold 6 decimals; compare like with like
    if not better(new, float(old), mode):
        return False, f"{metric} {value:.4f} does not beat version {prev}'s {float(old):.4f}", prev
    return True, f"{metric} {value:.4f} beats version {prev}'s {float(old):.4f}", prev

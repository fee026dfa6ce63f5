"""Model Registry operations: promote a search's best model, list registered models.

Promotion registers the chosen trial's logged model as a new version, with lineage tags
(search run, trial run, data fingerprint, test metrics), and moves the alias (``champion``)
to it only when it beats the current holder on the same test split, unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autofusion import tracking
from autofusion.errors import RegistryError, TrackingError


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    alias: str
    moved: bool
    reason: str
    metric: str
    value: float | None
    previous: str | None


def find_search(uri: str, *, task: str | None, search: str | None, experiment: str | None = None) -> Any:
    """The search (parent) run named by ``search``, else the newest finished one of the task."""
    if search:
        run = tracking.get_run(uri, search)
        if run.data.tags.get(tracking.KIND_TAG) != "search":
            raise RegistryError(f"run {search!r} is not an autofusion search run")
        return run
    if not (task or experiment):
        raise RegistryError("give --task or --search")
    return tracking.latest_search_run(uri, experiment or task)


def _split_key(run: Any) -> str:
    """Identifies the test split: the data fingerprint plus the split seed."""
    p = run.data.params
    return f"{p.get('data.fingerprint', '?')}:{p.get('search.seed', '?')}:{p.get('data.split_source', '?')}"


def promote(uri: str, *, task: str | None = None, search: str | None = None, name: str | None = None,
            alias: str = "champion", metric: str | None = None, force: bool = False,
            experiment: str | None = None) -> Promotion:
    """Registers the search's best model and moves ``alias`` to it if it is better."""
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
    mode = params.get("search.mode", "max") if metric == default else _metric_mode(metric)
    best_run = c.get_run(best_run_id)
    value = best_run.data.metrics.get(metric)
    if value is None:
        raise RegistryError(
            f"metric {metric!r} not found on the best trial; known: {', '.join(sorted(best_run.data.metrics)) or 'none'}"
        )
    _ensure_registered_model(c, name)
    lineage = {
        "autofusion.search_run_id": parent.info.run_id, "autofusion.trial_run_id": best_run_id,
        "autofusion.data_fingerprint": params.get("data.fingerprint", ""), "autofusion.split_key": _split_key(parent),
        "autofusion.metric": metric, f"autofusion.{metric}": f"{value:.6f}",
        "autofusion.task": tags.get("autofusion.task", ""),
        **{f"autofusion.{k}": f"{v:.6f}" for k, v in best_run.data.metrics.items() if k.startswith("test_")},
    }
    # A ``models:/<model_id>`` source must come with its model_id: a tracking server refuses it
    # otherwise ("The model_id request parameter must identify the resource that contains the source").
    model_id = _model_id(model_uri)
    mv = tracking.retry(lambda: c.create_model_version(name, model_uri, run_id=best_run_id, tags=lineage,
                                                       description=f"autofusion search {parent.info.run_id}",
                                                       model_id=model_id))
    moved, reason, previous = _decide(c, name, alias, lineage, metric, value, mode, force)
    if moved:
        c.set_registered_model_alias(name, alias, mv.version)
    return Promotion(name, str(mv.version), alias, moved, reason, metric, value, previous)


def _metric_mode(metric: str) -> str:
    from autofusion.metrics import metric_mode

    return metric_mode(metric)


def _model_id(model_uri: str) -> str | None:
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
    better = new > float(old) if mode == "max" else new < float(old)
    if not better:
        return False, f"{metric} {value:.4f} does not beat version {prev}'s {float(old):.4f}", prev
    return True, f"{metric} {value:.4f} beats version {prev}'s {float(old):.4f}", prev


def list_models(uri: str) -> list[dict[str, Any]]:
    """Every registered model version with its aliases and autofusion metrics."""
    c = tracking.client(uri)
    rows = []
    try:
        models = c.search_registered_models(max_results=1000)
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"cannot list models in {uri}: {str(exc).splitlines()[0]}") from None
    for rm in models:
        aliases: dict[str, list[str]] = {}
        for a, v in (rm.aliases or {}).items():
            aliases.setdefault(str(v), []).append(a)
        for mv in c.search_model_versions(f"name = '{rm.name}'", max_results=1000):
            rows.append({"name": rm.name, "version": str(mv.version), "aliases": ",".join(aliases.get(str(mv.version), [])),
                         "metric": mv.tags.get("autofusion.metric", ""),
                         "value": mv.tags.get(f"autofusion.{mv.tags.get('autofusion.metric', '')}", ""),
                         "search": mv.tags.get("autofusion.search_run_id", ""), "run": mv.run_id or ""})
    return sorted(rows, key=lambda r: (r["name"], -int(r["version"])))

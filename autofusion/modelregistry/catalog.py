"""Finding things in the store: a search run by id or the newest finished one of a task,
and every registered model version with its aliases and metrics."""

from __future__ import annotations

from typing import Any

from autofusion import tracking
from autofusion.errors import RegistryError, TrackingError


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


def list_models(uri: str) -> list[dict[str, Any]]:
    """Every registered model version with its aliases, autofusion metric, served latency (single
    row p50 and p95, rows per second in batches) and the test data it was scored on."""
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
                         "search": mv.tags.get("autofusion.search_run_id", ""), "run": mv.run_id or "",
                         "p50 ms": mv.tags.get("autofusion.latency_p50_ms", ""),
                         "p95 ms": mv.tags.get("autofusion.latency_p95_ms", ""),
                         "rows/s": mv.tags.get("autofusion.rows_per_s", ""),
                         "tested on": mv.tags.get("autofusion.tested_on", "")})
    return sorted(rows, key=lambda r: (r["name"], -int(r["version"])))

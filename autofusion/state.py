"""What a search keeps on disk so it can be resumed or used to warm-start another.

Per search, under ``<home>/searches/<search run id>/``:

- ``search.json``: the options the search was started with and its space file's text;
- ``optuna.journal``: the Optuna study (an append-only journal, safe against a killed
  driver), so a resumed search's sampler keeps its whole history;
- ``tune-<attempt>/``: Ray Tune's experiment folders with the trials' best checkpoints.

MLflow is the record of which trials are done: a child run that ended (FINISHED/FAILED)
is a done trial, with its configuration and checkpoint path in its tags. A resumed search
deletes the runs of trials that were cut off and runs them again, so nothing is counted
twice and no finished trial is rerun.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autofusion.errors import ConfigError
from autofusion.spaces.load import Space
from autofusion.spaces.sample import CHOICE_SECTIONS
from autofusion.spaces.schema import TRAIN_KEYS, ChoiceSection, Distribution

STATE_FILE = "search.json"
JOURNAL = "optuna.journal"


def state_dir(home: Path, search_id: str) -> Path:
    return home / "searches" / search_id


def save_options(folder: Path, opts: Any, space: Space) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"options": asdict(opts), "space_text": space.raw_text(), "space_path": str(space.path)}
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(folder / STATE_FILE)


def load_options(home: Path, search_id: str) -> dict[str, Any]:
    path = state_dir(home, search_id) / STATE_FILE
    if not path.is_file():
        raise ConfigError(
            f"--resume {search_id}: no saved state at {path}; resume from the folder the search ran in "
            "(or set AUTOFUSION_HOME to its .autofusion)"
        )
    return json.loads(path.read_text())


def journal_storage(folder: Path) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / JOURNAL)))


def to_optuna(d: Distribution) -> Any:
    """The Optuna distribution a schema distribution samples from (see spaces.sample.suggest)."""
    import optuna.distributions as od

    if d.type == "categorical":
        return od.CategoricalDistribution(list(d.choices or []))
    if d.type == "int":
        return od.IntDistribution(int(d.low), int(d.high), log=d.log, step=int(d.step) if d.step else 1)
    return od.FloatDistribution(float(d.low), float(d.high), log=d.log, step=d.step)


def space_distributions(space: Space) -> dict[str, Any]:
    """Every parameter the space can sample, conditional ones included, by flat name."""
    import optuna.distributions as od

    f = space.file
    out: dict[str, Any] = {}

    def section(key: str, sec: ChoiceSection) -> None:
        prefix = key[: -len(".type")] if key.endswith(".type") else key
        if len(sec.choices) > 1:
            out[key] = od.CategoricalDistribution(list(sec.choices))
        for name, params in sec.choices.items():
            for p, v in params.items():
                if isinstance(v, Distribution):
                    out[f"{prefix}.{name}.{p}"] = to_optuna(v)
        for p, v in sec.shared.items():
            if isinstance(v, Distribution):
                out[f"{prefix}.{p}"] = to_optuna(v)

    for m in space.modalities:
        section(f"encoder.{m}", f.encoders[m])
    for s in CHOICE_SECTIONS:
        if getattr(f, s) is not None:
            section(f"{s}.type", getattr(f, s))
    for name, v in (("head.hidden", f.head.hidden), ("head.dropout", f.head.dropout),
                    *((f"train.{k}", getattr(f.train, k)) for k in TRAIN_KEYS)):
        if isinstance(v, Distribution):
            out[name] = to_optuna(v)
    return out


def reconcile_study(study: Any) -> int:
    """Trials left RUNNING by an interrupted driver are failed and their parameters queued
    again, so the sampler keeps its history and the cut-off configurations run anew."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=True)
            n += 1
    return n


def warm_start(study: Any, source: Any, space: Space) -> int:
    """Copies the finished trials of ``source`` (and those an early-stopping scheduler pruned,
    with their per-epoch values) whose parameters fit ``space`` into ``study``."""
    from optuna.distributions import check_distribution_compatibility
    from optuna.trial import TrialState

    dists = space_distributions(space)
    copied = 0
    for t in source.get_trials(deepcopy=True, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        ok = True
        for name, d in t.distributions.items():
            new = dists.get(name)
            try:
                if new is None:
                    raise ValueError(name)
                check_distribution_compatibility(d, new)
                if not new._contains(new.to_internal_repr(t.params[name])):
                    raise ValueError(name)
            except (ValueError, TypeError):
                ok = False
                break
        fits = (len(t.values or []) == len(study.directions) if t.state == TrialState.COMPLETE
                else len(study.directions) == 1)
        if ok and fits:
            study.add_trial(t)
            copied += 1
    return copied


def done_trials(uri: str, experiment_id: str, parent: str, metric: str, mode: str) -> dict[str, Any]:
    """TrialRecords of the trials a search finished, rebuilt from MLflow; the runs of trials
    that were cut off (still RUNNING, or KILLED) are deleted, to be run again."""
    from autofusion import tracking
    from autofusion.search import TrialRecord

    c = tracking.client(uri)
    records: dict[str, Any] = {}
    for run in tracking.find_child_runs(uri, experiment_id, parent):
        tags = run.data.tags
        if run.info.status not in ("FINISHED", "FAILED") or "autofusion.config" not in tags:
            tracking.retry(lambda r=run: c.delete_run(r.info.run_id))
            continue
        tid = tags["autofusion.trial_id"]
        rec = TrialRecord(tid, int(tags.get("autofusion.trial_number", len(records) + 1)),
                          json.loads(tags["autofusion.config"]), status=tags.get("autofusion.status", "finished"))
        rec.run_id = run.info.run_id
        rec.error = tags.get("autofusion.error")
        rec.planned_epochs = int(tags.get("autofusion.planned_epochs", 0))
        rec.checkpoint = tags.get("autofusion.checkpoint")
        epochs = int(tags.get("autofusion.epochs_run", 0))
        hist: list[dict[str, float]] = [{} for _ in range(epochs)]
        for key in run.data.metrics:
            for m in c.get_metric_history(run.info.run_id, key):
                if 1 <= m.step <= epochs:
                    hist[m.step - 1][key] = m.value
        rec.history = hist
        rec.seconds = sum(h.get("epoch_seconds", 0.0) for h in hist)
        last = run.data.metrics
        rec.num_params = int(last["num_params"]) if "num_params" in last else None
        rec.latency_ms = last.get("latency_ms")
        vals = [(h[metric], i + 1) for i, h in enumerate(hist) if metric in h]
        if vals:
            rec.best_value, rec.best_epoch = (max if mode == "max" else min)(vals, key=lambda v: v[0])
        records[tid] = rec
    return records

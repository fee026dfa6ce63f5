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

from autofusion import tracking
from autofusion.errors import ConfigError
from autofusion.home import state_dir
from autofusion.search.records import SearchOptions, TrialRecord
from autofusion.search.runs import record_from_run
from autofusion.spaces.distributions import space_distributions
from autofusion.spaces.load import Space

STATE_FILE = "search.json"
JOURNAL = "optuna.journal"


def save_options(folder: Path, opts: SearchOptions, space: Space) -> None:
    """Writes the options and the space file's text, atomically, for ``--resume``."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"options": asdict(opts), "space_text": space.raw_text(), "space_path": str(space.path)}
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(folder / STATE_FILE)


def load_options(home: Path, search_id: str) -> dict[str, Any]:
    """What :func:`save_options` wrote for search ``search_id``."""
    path = state_dir(home, search_id) / STATE_FILE
    if not path.is_file():
        raise ConfigError(
            f"--resume {search_id}: no saved state at {path}; resume from the folder the search ran in "
            "(or set AUTOFUSION_HOME to its .autofusion)"
        )
    return json.loads(path.read_text())


def resumed_options(opts: SearchOptions, home: Path) -> tuple[SearchOptions, str]:
    """The saved options of the search being resumed; the space text is restored from the
    state so later edits of the file do not change a running search."""
    saved = load_options(home, opts.resume)["options"]
    keep = {k: getattr(opts, k) for k in ("quiet", "verbose", "address", "concurrency", "home")
            if getattr(opts, k) not in (None, False)}
    saved.update(keep)
    saved["objectives"] = tuple(saved.get("objectives") or ())
    saved["resume"] = opts.resume
    saved["warm_start"] = None
    space_file = state_dir(home, opts.resume) / "space.yaml"
    space_file.write_text(load_options(home, opts.resume)["space_text"])
    saved["space"], saved["task"] = str(space_file), None
    return SearchOptions(**saved), opts.resume


def journal_storage(folder: Path) -> Any:
    """The Optuna journal storage of a search's state folder."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / JOURNAL)))


def reconcile_study(study: Any) -> int:
    """Trials left RUNNING by an interrupted driver are failed and their parameters queued
    again, so the sampler keeps its history and the cut-off configurations run anew."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        params = dict(t.params)
        study.tell(t.number, state=TrialState.FAIL)
        # Not enqueue_trial(skip_if_exists=True): it compares with every trial, the one just
        # failed included, and would never queue a sampled configuration again.
        if not _queued(study, params):
            study.enqueue_trial(params)
        n += 1
    return n


def _queued(study: Any, params: dict[str, Any]) -> bool:
    """Whether a WAITING trial already holds exactly ``params``."""
    from optuna.trial import TrialState

    return any(t.system_attrs.get("fixed_params", t.params) == params
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


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


def warm_start_study(home: Path, search_id: str) -> Any:
    """The Optuna study of search ``search_id``, to warm-start a new search from."""
    import optuna

    folder = state_dir(home, search_id)
    if not (folder / JOURNAL).is_file():
        raise ConfigError(f"--warm-start {search_id}: no Optuna history at {folder / JOURNAL}; warm-start "
                          "from a search run in this folder, or set AUTOFUSION_HOME to its .autofusion")
    return optuna.load_study(study_name=search_id, storage=journal_storage(folder))


def done_trials(uri: str, experiment_id: str, parent: str, metric: str, mode: str) -> dict[str, TrialRecord]:
    """TrialRecords of the trials a search finished, rebuilt from MLflow; the runs of trials
    that were cut off (still RUNNING, or KILLED) are deleted, to be run again."""
    c = tracking.client(uri)
    records: dict[str, TrialRecord] = {}
    for run in tracking.find_child_runs(uri, experiment_id, parent):
        if run.info.status not in ("FINISHED", "FAILED") or "autofusion.config" not in run.data.tags:
            tracking.retry(lambda r=run: c.delete_run(r.info.run_id))
            continue
        rec = record_from_run(c, run, metric, mode, number=len(records) + 1)
        records[rec.trial_id] = rec
    return records

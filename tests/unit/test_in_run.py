"""Logging a model into a search's run while the search runs (its ensemble, its bagged model)
leaves that run RUNNING: ``mlflow.start_run(run_id=...)`` would end it FINISHED on leaving its
block, and a search stopped during its bagging would then look finished and refuse
``--resume``. A run that had ended keeps its status."""

from __future__ import annotations

import mlflow

from autofusion import tracking
from autofusion.serving.pyfunc import in_run


def test_a_running_run_stays_running_and_an_ended_one_stays_ended(sqlite_uri):
    c = tracking.client(sqlite_uri)
    exp = c.create_experiment("x")
    running, ended = c.create_run(exp).info.run_id, c.create_run(exp).info.run_id
    c.set_terminated(ended, status="FAILED")
    for run_id in (running, ended):
        with in_run(sqlite_uri, run_id):
            mlflow.log_param("logged", "yes")
    assert c.get_run(running).info.status == "RUNNING"
    assert c.get_run(ended).info.status == "FAILED"
    assert {c.get_run(r).data.params["logged"] for r in (running, ended)} == {"yes"}
    try:  # a model that fails to log leaves the run as it was too
        with in_run(sqlite_uri, running):
            raise RuntimeError("log_model failed")
    except RuntimeError:
        pass
    assert c.get_run(running).info.status == "RUNNING"
    with mlflow.start_run(run_id=running):  # what in_run guards against
        pass
    assert c.get_run(running).info.status == "FINISHED"

"""The promotion rule's direction, on search runs written straight into a real sqlite MLflow
store (no Ray, no training): the search's mode belongs to its metric; another --metric
is compared in its own direction."""

from __future__ import annotations

from autofusion import modelregistry, tracking


def _fake_search(uri: str, exp_id: str, metrics: dict[str, float]) -> str:
    """A finished search run (selected on val_loss, mode min) whose best trial logged a model."""
    c = tracking.client(uri)
    parent = c.create_run(exp_id, tags={tracking.KIND_TAG: "search", "autofusion.task": "demo"}).info.run_id
    child = c.create_run(exp_id, tags={tracking.PARENT_TAG: parent, tracking.KIND_TAG: "trial"}).info.run_id
    for k, v in metrics.items():
        c.log_metric(child, k, v)
    lm = c.create_logged_model(exp_id, name="model", source_run_id=child)
    for k, v in {"search.metric": "val_loss", "search.mode": "min", "search.seed": "0",
                 "data.fingerprint": "abc", "data.split_source": "seeded"}.items():
        c.log_param(parent, k, v)
    c.set_tag(parent, "autofusion.best_run_id", child)
    c.set_tag(parent, "autofusion.model_uri", f"models:/{lm.model_id}")
    for run in (child, parent):
        c.set_terminated(run)
    return parent


def test_explicit_metric_is_compared_in_its_own_direction(sqlite_uri):
    exp = tracking.experiment_id(sqlite_uri, "demo")
    a = _fake_search(sqlite_uri, exp, {"test_loss": 1.0, "test_f1_macro": 0.3})
    b = _fake_search(sqlite_uri, exp, {"test_loss": 0.9, "test_f1_macro": 0.5})
    c = _fake_search(sqlite_uri, exp, {"test_loss": 0.8, "test_f1_macro": 0.1})
    p = modelregistry.promote(sqlite_uri, search=a, metric="test_f1_macro")
    assert (p.version, p.moved) == ("1", True)
    # a higher f1 wins although the search itself minimised val_loss
    p = modelregistry.promote(sqlite_uri, search=b, metric="test_f1_macro")
    assert (p.version, p.moved) == ("2", True) and "beats version 1" in p.reason
    p = modelregistry.promote(sqlite_uri, search=c, metric="test_f1_macro")
    assert not p.moved and "does not beat version 2" in p.reason
    # the default metric (the search's, on test) keeps the search's mode: lower loss wins
    p = modelregistry.promote(sqlite_uri, search=c)
    assert p.metric == "test_loss" and p.moved and "beats version 2" in p.reason

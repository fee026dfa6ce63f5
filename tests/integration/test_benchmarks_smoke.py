"""The benchmarks are scripts, not tests; CI runs each once in its tiny ``--smoke`` mode so
they cannot rot. Each script's ``main`` runs in this process on the session's Ray (a Ray
start and the imports per script would cost more than the smoke runs themselves), and its
table must come out with figures in every row."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"\d+(\.\d+)?")
RULE = re.compile(r"\|(-{3,}\|)+")


@pytest.fixture
def run_smoke(ray_local, capsys, tmp_path, monkeypatch):
    """Runs ``benchmarks/<script> --smoke`` (or ``python -m benchmarks.<package> --smoke``);
    returns what it printed. Its scratch folders go under the test's folder, and torch's
    thread count is put back afterwards."""
    import tempfile

    import torch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = torch.get_num_threads()

    def run(script: str) -> str:
        name = script.removesuffix(".py")  # a script, or a package run with python -m
        module = importlib.import_module(f"benchmarks.{name}")  # importable: a spawned child needs it
        capsys.readouterr()
        try:
            module.main(["--smoke"])
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    return run


def _tables(out: str) -> list[list[list[str]]]:
    """Every markdown table the script printed, as rows of cells (header and rule left out)."""
    tables, current = [], []
    for line in [*out.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line.strip())
            continue
        if len(current) > 2 and RULE.fullmatch(current[1]):  # Ray Tune's own boxes are not ours
            tables.append([[c.strip() for c in row.strip("|").split("|")] for row in current[2:]])
        current = []
    assert tables, out
    return tables


@pytest.mark.slow
def test_overhead_smoke(run_smoke):
    (rows,) = _tables(run_smoke("overhead.py"))
    assert [r[0][:3] for r in rows] == ["(a)", "(b)", "(c)", "(c)"], rows
    for r in rows:
        wall, train, ideal, fixed, ratio = float(r[2]), float(r[3]), float(r[4]), float(r[5]), float(r[6].rstrip("x"))
        assert wall > 0 and train > 0 and ratio > 0, r  # every method really trained
        assert fixed == pytest.approx(wall - ideal, abs=0.11), r


@pytest.mark.slow
def test_throughput_smoke(run_smoke):
    out = run_smoke("throughput.py")
    speed, decode = _tables(out)
    assert len(speed) == 2 and all(float(r[1]) > 0 and float(r[2]) > 0 for r in speed), speed
    assert [r[0] for r in decode] == ["prepare_data", "search: start to first trial"], decode
    assert all(NUMBER.fullmatch(c.rstrip("sx")) for r in decode for c in r[1:]), decode
    assert re.search(r"peak resident memory of a process running one trial: \d+ MB", out), out


@pytest.mark.slow
def test_quality_smoke(run_smoke):
    (rows,) = _tables(run_smoke("quality.py"))
    methods = [r[1] for r in rows]
    for name in ("image only", "text only", "fixed late", "fixed mid", "random search", "autofusion"):
        assert any(m.startswith(name) for m in methods), methods
    for r in rows:
        assert 0.0 <= float(r[2]) <= 1.0, r  # a test accuracy


@pytest.mark.slow
def test_realdata_smoke(run_smoke):
    out = run_smoke("realdata")  # a package: python -m benchmarks.realdata
    (rows,) = _tables(out)
    methods = [r[0] for r in rows]
    for name in ("image:", "text:", "early fusion", "late fusion", "majority class", "autofusion default search"):
        assert any(m.startswith(name) for m in methods), methods
    assert "| method | accuracy | macro-F1 | ROC-AUC | log loss | val macro-F1 | wall s | note |" in out, out
    for r in rows:  # of test predictions (ROC-AUC, macro one-vs-rest of the demo's 4 classes, and log loss from
        # the probabilities: predict_proba, autofusion predict's prob_<class> columns), then of validation ones
        accuracy, f1, auc, loss, val_f1, wall = (float(c) for c in r[1:7])
        assert all(0.0 <= v <= 1.0 for v in (accuracy, f1, auc, val_f1)) and loss > 0, r
        assert wall >= 0, r
    assert re.search(r"beat the best scikit-learn reference on demo-smoke\? accuracy: (YES|NO), search", out), out


def test_realdata_scores_probabilities_and_judges_a_published_score():
    """ROC-AUC (the positive class of two is the second sorted label; macro one-vs-rest over the
    classes the labels hold, of more) and log loss are scikit-learn's on the same probabilities;
    the verdict against a published score gives the search's mean and the shortfall."""
    from sklearn.metrics import log_loss, roc_auc_score

    metrics = importlib.import_module("benchmarks.realdata.metrics")
    report = importlib.import_module("benchmarks.realdata.report")
    y = np.array(["0", "1", "1", "0", "1"], dtype=object)
    p1 = np.array([0.2, 0.9, 0.4, 0.6, 0.7])
    got = metrics.probability_metrics(y, np.column_stack([1 - p1, p1]), ["0", "1"])
    assert got == pytest.approx({"roc_auc": roc_auc_score(y == "1", p1),
                                 "log_loss": log_loss(y, np.column_stack([1 - p1, p1]))})
    three = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    yt = np.array(["a", "b", "b", "a"], dtype=object)  # class "c" absent: left out of the macro mean
    got = metrics.probability_metrics(yt, three, ["a", "b", "c"])
    per_class = [roc_auc_score(yt == c, three[:, j]) for j, c in enumerate("ab")]
    assert got["roc_auc"] == pytest.approx(np.mean(per_class))
    assert metrics.aligned(np.array([[0.3, 0.7]]), ["1", "0"], ["0", "1", "2"]).tolist() == [[0.7, 0.3, 0.0]]

    published = metrics.Row("AutoGluon (published)", "published", {"roc_auc": 0.874})
    runs = [{"metrics": {"roc_auc": v}} for v in (0.84, 0.86)]
    search = metrics.Row("search", "search", {"roc_auc": 0.85}, runs=runs, spread={"roc_auc": (0.84, 0.86)})
    line, item = report.judge_published(published, search)
    assert line == ("roc_auc: NO, search 0.850 (mean of 2 runs, 0.840-0.860) falls short by 0.024 "
                    "vs AutoGluon (published) 0.874")
    assert item["roc_auc"]["beats"] is False and item["roc_auc"]["margin"] == pytest.approx(-0.024)
    search.metrics["roc_auc"] = 0.88
    assert report.judge_published(published, search)[0].startswith("roc_auc: YES, search 0.880 (mean of 2 runs")


def test_realdata_runs_the_search_once_per_seed_or_repeats_one_seed():
    """``--search-seeds`` gives each run its own ``--seed``; ``--repeats`` the same flags each
    time; contradictory or malformed seeds stop the script before it writes anything."""
    realdata = importlib.import_module("benchmarks.realdata")
    methods = importlib.import_module("benchmarks.realdata.methods")
    assert methods.run_args(["--num-trials", "2"], 3, None) == [["--num-trials", "2"]] * 3
    assert methods.run_args(["--num-trials", "2"], 3, [0, 5]) == [["--num-trials", "2", "--seed", "0"],
                                                                 ["--num-trials", "2", "--seed", "5"]]
    assert methods.seeds_label([0, 1, 2]) == ", seeds 0, 1, 2" and methods.seeds_label(None) == ""
    with pytest.raises(SystemExit, match="whole numbers separated by commas, not 'a,b'"):
        realdata.main(["--search-seeds", "a,b"])
    with pytest.raises(SystemExit, match="give one of them"):
        realdata.main(["--search-seeds", "1", "--search-args", "--seed 3"])


@pytest.mark.slow
def test_scale_smoke(run_smoke):
    (rows,) = _tables(run_smoke("scale.py"))  # two grown demos sharing 4 files, each case in its own process
    assert [(r[0], r[1]) for r in rows] == [("200", "4 / 4"), ("400", "4 / 4")], rows
    for r in rows:
        assert all(re.fullmatch(r"\d+\.\d \(\d+\.\d\)", c) for c in r[2:5]), r  # decode, features, epoch: wall (CPU)
        assert NUMBER.fullmatch(r[5]), r  # warm seconds
        assert len(r[6].split(", ")) == 4 and float(r[7]) > 0, r  # peak RSS per stage, peak private


@pytest.mark.slow
def test_serving_smoke(run_smoke):
    out = run_smoke("serving.py")  # tiny pretrained-style models, logged and loaded as served
    (rows,) = _tables(out)
    assert [r[0] for r in rows] == ["single model", "ensemble of 3, shared", "ensemble of 3, per member"], rows
    assert [r[1] for r in rows] == ["2", "2", "6"]  # backbone copies: the ensemble shares them
    assert all(float(c) > 0 for r in rows for c in r[2:]), rows
    assert "the same predictions: True" in out

"""The benchmarks are scripts, not tests; CI runs each once in its tiny ``--smoke`` mode so
they cannot rot. Each script's ``main`` runs in this process on the session's Ray (a Ray
start and the imports per script would cost more than the smoke runs themselves), and its
table must come out with figures in every row."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"\d+(\.\d+)?")
RULE = re.compile(r"\|(-{3,}\|)+")


@pytest.fixture
def run_smoke(ray_local, capsys, tmp_path, monkeypatch):
    """Runs ``benchmarks/<script> --smoke``; returns what it printed. Its scratch folders go
    under the test's folder, and torch's thread count is put back afterwards."""
    import tempfile

    import torch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = torch.get_num_threads()

    def run(script: str) -> str:
        module = importlib.import_module(f"benchmarks.{script[:-3]}")  # importable: a spawned child needs it
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
    assert [r[0][:3] for r in rows] == ["(a)", "(b)", "(c)"], rows
    for r in rows:
        wall, train, ratio = float(r[2]), float(r[3]), float(r[5].rstrip("x"))
        assert wall > 0 and train > 0 and ratio > 0, r  # every method really trained


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
    out = run_smoke("realdata.py")
    (rows,) = _tables(out)
    methods = [r[0] for r in rows]
    for name in ("image:", "text:", "early fusion", "late fusion", "majority class", "autofusion default search"):
        assert any(m.startswith(name) for m in methods), methods
    assert "| method | accuracy | macro-F1 | val macro-F1 | wall s | note |" in out, out
    for r in rows:
        accuracy, f1, val_f1, wall = (float(c) for c in r[1:5])  # of test predictions, then of validation ones
        assert 0.0 <= accuracy <= 1.0 and 0.0 <= f1 <= 1.0 and 0.0 <= val_f1 <= 1.0, r
        assert wall >= 0, r
    assert re.search(r"beat the best scikit-learn reference on demo-smoke\? accuracy: (YES|NO), search", out), out


def test_realdata_runs_the_search_once_per_seed_or_repeats_one_seed():
    """``--search-seeds`` gives each run its own ``--seed``; ``--repeats`` the same flags each
    time; contradictory or malformed seeds stop the script before it writes anything."""
    realdata = importlib.import_module("benchmarks.realdata")
    assert realdata.run_args(["--num-trials", "2"], 3, None) == [["--num-trials", "2"]] * 3
    assert realdata.run_args(["--num-trials", "2"], 3, [0, 5]) == [["--num-trials", "2", "--seed", "0"],
                                                                  ["--num-trials", "2", "--seed", "5"]]
    assert realdata.seeds_label([0, 1, 2]) == ", seeds 0, 1, 2" and realdata.seeds_label(None) == ""
    with pytest.raises(SystemExit, match="whole numbers separated by commas, not 'a,b'"):
        realdata.main(["--search-seeds", "a,b"])
    with pytest.raises(SystemExit, match="give one of them"):
        realdata.main(["--search-seeds", "1", "--search-args", "--seed 3"])

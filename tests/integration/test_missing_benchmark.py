"""``benchmarks/missing.py`` is a script, not a test; its tiny ``--smoke`` run keeps it from
rotting: every arm of both demo tables gets a test accuracy complete and per blanked modality,
through the logged model."""

from __future__ import annotations

import importlib
import tempfile

import pytest
import torch


@pytest.mark.slow
def test_missing_benchmark_smoke(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = torch.get_num_threads()
    module = importlib.import_module("benchmarks.missing")
    try:
        module.main(["--smoke"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    tables = [block for block in out.split("\n\n") if block.startswith("| missing |")]
    assert len(tables) == 2, out  # the XOR demo and its halves variant
    for block in tables:
        header, _, *rows = block.strip().splitlines()
        assert header == "| missing | all inputs | image blanked | text blanked |", header
        arms = [r.split("|")[1].strip() for r in rows]
        assert len(arms) == len(module.ARMS) and all(a.startswith(b) for a, b in zip(arms, module.ARMS)), rows
        for r in rows:
            assert all(0.0 <= float(c.split()[0]) <= 1.0 for c in r.strip("|").split("|")[1:]), r

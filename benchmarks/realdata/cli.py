"""The entry point (``python -m benchmarks.realdata``): the command-line options, the data
sets they name, and the loop that benches each one and prints its table and verdict."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .datasets import (
    DATASETS,
    ROLES,
    DatasetSpec,
    load_dataset,
    parse_columns,
    smoke_dataset,
)
from .methods import METHODS, SMOKE_METHODS, Plan, bench
from .metrics import published_rows
from .pretrained import pretrained_verdict
from .report import FOOTNOTE, dataset_record, heading, table, verdict
from .runs import known_tasks

DESCRIPTION = "Real data: does autofusion's default search beat ten-line scikit-learn models?"
SMOKE_SEARCH_ARGS = ["--num-trials", "1", "--max-epochs", "1", "--no-trees"]  # bagging stays: its out-of-fold path


def parser() -> argparse.ArgumentParser:
    """The command-line options."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.realdata", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None,
                    help=f"of {','.join(DATASETS)} (default: all, unless --data is given)")
    ap.add_argument("--data", default=None, help="a manifest of your own")
    ap.add_argument("--columns", default=None, metavar="ROLE=COL,...",
                    help=f"roles of --data's columns ({', '.join(ROLES)}; a role may repeat); only these are used")
    ap.add_argument("--label", default=None, help="--data's label column")
    ap.add_argument("--target", choices=["classification", "regression"], default=None, help="default: from the label")
    ap.add_argument("--methods", default=None,
                    help=f"of {','.join(METHODS)} (default: all; --smoke: {','.join(SMOKE_METHODS)}); tabular: the "
                         "default search on a data set's tabular fields alone")
    ap.add_argument("--repeats", type=int, default=1, help="default searches per data set, same seed (is it steady?)")
    ap.add_argument("--search-seeds", default=None, metavar="S,S,...",
                    help="one default search (and fixed model) per seed instead of --repeats: the spread over seeds")
    ap.add_argument("--search-args", default="", help="extra flags for both autofusion searches, e.g. '--num-trials 24'")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split made for a manifest without one")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per autofusion command")
    ap.add_argument("--json", default=None, metavar="OUT", help="write the raw figures here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (stores, predictions) and print it")
    ap.add_argument("--smoke", action="store_true", help="tiny generated data, 1 trial of 1 epoch: checks the script works")
    return ap


def parse_seeds(text: str | None, search_args: list[str]) -> list[int] | None:
    """``--search-seeds`` as numbers (None when not given); refuses a second ``--seed``."""
    try:
        seeds = [int(v) for v in text.split(",")] if text else None
    except ValueError:
        raise SystemExit(f"--search-seeds: whole numbers separated by commas, not {text!r}") from None
    if seeds is not None and "--seed" in search_args:
        raise SystemExit("--search-seeds and a --seed in --search-args: give one of them")
    return seeds


def parse_methods(text: str | None, smoke: bool) -> set[str]:
    """``--methods`` as names of ``METHODS`` (default: all; in smoke mode ``SMOKE_METHODS``)."""
    methods = set((text or ",".join(SMOKE_METHODS if smoke else sorted(METHODS))).split(","))
    if methods - set(METHODS):
        raise SystemExit(f"--methods: unknown {', '.join(sorted(methods - set(METHODS)))}")
    return methods


def dataset_specs(a: argparse.Namespace, tmp: Path) -> list[tuple[str, DatasetSpec]]:
    """The data sets to bench: the smoke demo, or the named built-in ones, then ``--data``."""
    specs: list[tuple[str, DatasetSpec]] = []
    if a.smoke:
        specs.append(("demo-smoke", DatasetSpec(smoke_dataset(tmp), label=a.label, target=a.target)))
    else:
        for n in a.datasets.split(",") if a.datasets else ([] if a.data else list(DATASETS)):
            if n not in DATASETS:
                raise SystemExit(f"--datasets: unknown {n!r}; known: {', '.join(DATASETS)}")
            specs.append((n, DATASETS[n]))
    if a.data:
        roles = parse_columns(a.columns) if a.columns else None
        specs.append((Path(a.data).resolve().parent.name or Path(a.data).stem,
                      DatasetSpec(Path(a.data), roles=roles, label=a.label, target=a.target)))
    return specs


def header(plan: Plan, methods: set[str]) -> dict[str, Any]:
    """The JSON report's header: date, machine, and how the searches ran."""
    return {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(), "repeats": len(plan.seeds) if plan.seeds else plan.repeats,
            "search_seeds": plan.seeds, "search_args": plan.search_args,
            "methods": sorted(methods), "datasets": []}


def main(argv: list[str] | None = None) -> None:
    """Benches every chosen method on every chosen data set; prints the tables."""
    a = parser().parse_args(argv)
    search_args = shlex.split(a.search_args)
    seeds = parse_seeds(a.search_seeds, search_args)
    methods = parse_methods(a.methods, a.smoke)
    tmp = Path(tempfile.mkdtemp(prefix="afx-realdata-"))
    t_start = time.time()
    tasks = known_tasks()
    specs = dataset_specs(a, tmp)
    if a.smoke:
        search_args = [*SMOKE_SEARCH_ARGS, *search_args]
    plan = Plan(search_args, a.repeats, seeds, tmp, 300 if a.smoke else a.timeout)
    report = header(plan, methods)
    for name, spec in specs:
        ds = load_dataset(name, spec, a.seed, tmp, tasks)
        rows = bench(ds, methods, plan) + published_rows(ds)  # published scores: fixed rows, always shown
        line, judged = verdict(ds, rows)
        print(heading(ds))
        print(table(ds, rows))
        print(f"\n{line}")
        if pretrained_verdict(ds, rows):  # the search with the shelf weights, when it ran
            print(pretrained_verdict(ds, rows))
        sys.stdout.flush()
        report["datasets"].append(dataset_record(ds, rows, judged))
    report["seconds"] = time.time() - t_start
    print(f"\nrealdata benchmark: {time.time() - t_start:.0f}s; " + FOOTNOTE)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2, default=str))
    if a.keep:
        print(f"scratch folder kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)

"""The methods compared on each data set: the registry ``METHODS`` (name -> function that
returns the method's table rows), the ``Plan`` they share (search flags, repeats or seeds,
scratch folder, timeout), and ``bench``, which runs the chosen ones one after another."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .datasets import TABULAR, Dataset, tabular_only
from .metrics import Row
from .pretrained import pretrained_method
from .references import sklearn_rows
from .runs import autofusion_run, neural_row


@dataclass(frozen=True)
class Plan:
    """How the neural methods run: the extra ``autofusion search`` flags, how many times
    (``repeats`` with the same flags, or once per seed), where, and for how long at most."""

    search_args: list[str]
    repeats: int
    seeds: list[int] | None
    tmp: Path
    timeout: float


def run_args(search_args: list[str], repeats: int, seeds: list[int] | None) -> list[list[str]]:
    """The flags of each repeated run: the same ones ``repeats`` times, or one run per seed."""
    if seeds is None:
        return [list(search_args)] * repeats
    return [[*search_args, "--seed", str(s)] for s in seeds]


def seeds_label(seeds: list[int] | None) -> str:
    """What a row's runs differ by, for its method column."""
    return f", seeds {', '.join(map(str, seeds))}" if seeds else ""


def sklearn_method(ds: Dataset, plan: Plan) -> list[Row]:
    """The scikit-learn references (see ``references``)."""
    return sklearn_rows(ds)


def fixed_method(ds: Dataset, plan: Plan) -> list[Row]:
    """The fixed hand-built model: a search's first trial (concat + MLP), once or once per seed."""
    runs = [autofusion_run(ds, [*args, "--num-trials", "1"], plan.tmp, f"fixed{i + 1}", plan.timeout)
            for i, args in enumerate(run_args(plan.search_args, 1, plan.seeds))]
    return [neural_row("autofusion fixed hand-built model (search --num-trials 1: concat + MLP"
                       + seeds_label(plan.seeds) + ")", "fixed", runs)]


def search_method(ds: Dataset, plan: Plan) -> list[Row]:
    """autofusion's default search, ``repeats`` times or once per seed (stops when the CLI
    refuses the data: every repeat would)."""
    runs = []
    for i, args in enumerate(run_args(plan.search_args, plan.repeats, plan.seeds)):
        runs.append(autofusion_run(ds, args, plan.tmp, f"search{i + 1}", plan.timeout))
        if runs[-1].get("rc") == 2:
            break
    label = "autofusion default search" + (f" ({shlex.join(plan.search_args)})" if plan.search_args else "")
    return [neural_row(label + seeds_label(plan.seeds), "search", runs)]


def tabular_method(ds: Dataset, plan: Plan) -> list[Row]:
    """The default search on the data set's tabular fields alone (none: no row)."""
    if not any(ds.roles.get(r) for r in TABULAR):
        return []
    only = tabular_only(ds, plan.tmp)
    runs = [autofusion_run(only, args, plan.tmp, f"tabular{i + 1}", plan.timeout)
            for i, args in enumerate(run_args(plan.search_args, plan.repeats, plan.seeds))]
    return [neural_row("autofusion default search, tabular fields only (no photos" + seeds_label(plan.seeds) + ")",
                       "search", runs)]


# The methods (``--methods``), in the order their rows are printed. A new method is one
# function ``(Dataset, Plan) -> list[Row]`` and one entry here.
METHODS: dict[str, Callable[[Dataset, Plan], list[Row]]] = {
    "sklearn": sklearn_method,
    "fixed": fixed_method,
    "search": search_method,
    "tabular": tabular_method,
    "pretrained": pretrained_method,  # the search after `weights add` of the shelf's backbones (pretrained.py)
}
SMOKE_METHODS = ("sklearn", "search")


def bench(ds: Dataset, methods: set[str], plan: Plan) -> list[Row]:
    """The chosen methods on one data set, one after another (so their wall times do not
    overlap), in ``METHODS``' order."""
    return [row for name, method in METHODS.items() if name in methods for row in method(ds, plan)]

"""``autofusion data inspect``: what a search would make of a manifest, without training.

It runs the same checks, decoding (into the same cache, so a later search starts warm)
and split as :func:`autofusion.data.prepare.prepare_data` with bad rows skipped, and
reports instead of raising on bad rows. A manifest that cannot be used at all (missing,
unreadable, no label column, a single class ...) still raises :class:`DataError`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autofusion.data.manifest import (
    FORMATS,
    candidate_columns,
    parse_columns_flag,
    read_manifest,
)
from autofusion.data.prepare import check_rows, split_rows
from autofusion.data.splits import NAMES
from autofusion.errors import ConfigError, DataError
from autofusion.modalities import MODALITIES

SHOWN_BAD_ROWS = 10


def inspect_facts(
    manifest: str | Path,
    *,
    task: str | None = None,
    space: str | Path | Any | None = None,
    columns: str | dict[str, str] | None = None,
    seed: int = 0,
    home: Path | None = None,
) -> dict[str, Any]:
    """The facts ``data inspect`` prints, as a JSON-serialisable dict.

    Args:
        manifest: the CSV/TSV/JSONL/JSON/Parquet file.
        task: a built-in task; its space file gives the modalities and data settings.
        space: a space file (or a loaded ``Space``); with neither, the task is inferred
            from the columns present.
        columns: ``ROLE=COL,...`` or a role -> column dict, as ``--columns``.
        seed: the seed of the split, as ``search --seed``.
        home: where the decode cache lives (default: :func:`default_home`).

    Raises:
        DataError: the manifest cannot be used at all.
    """
    flag = parse_columns_flag(columns) if isinstance(columns, str) or columns is None else dict(columns)
    sp = _space(manifest, task, space, flag)
    ds = sp.file.data
    check = check_rows(manifest, sp, columns=flag, home=home)
    data = split_rows(check, sp, on_bad_rows="skip", seed=seed)
    meta = data.meta
    n = len(check.df)

    classes: dict[str, dict[str, int]] = {}
    target_stats: dict[str, float] = {}
    if meta.target == "regression":
        y = data.targets[:, 0].astype(np.float64)
        target_stats = {"min": float(y.min()), "max": float(y.max()), "mean": float(y.mean()), "std": float(y.std())}
    else:
        for j, name in enumerate(meta.classes):
            hits = data.targets == j if meta.target == "classification" else data.targets[:, j] > 0
            per = {s: int((hits & (data.split == c)).sum()) for c, s in enumerate(NAMES)}
            classes[name] = {"total": int(hits.sum()), **per}

    # A bad row of a modality whose cell is not empty is a file that could not be decoded.
    unreadable = Counter(b.field for b in check.bad if b.field in check.present and check.present[b.field][b.row - 1])
    modalities = {
        i.name: {
            "column": ",".join(i.columns),
            "modality": i.modality,
            "present": int(check.present[i.name].sum()),
            "missing": int(n - check.present[i.name].sum()),
            "missing_allowed": i.modality in check.allow_missing,
            "unreadable": int(unreadable.get(i.name, 0)),
        }
        for i in check.inputs
    }
    combos = Counter(
        "+".join(i.name for i in check.inputs if check.present[i.name][r]) or "(none)" for r in range(n)
    )

    bad_rows = check.bad_rows
    shown = set(bad_rows[:SHOWN_BAD_ROWS])
    warnings = [] if "split" in check.roles or "group" in check.roles else repeated_files(check)
    return {
        "manifest": str(check.manifest),
        "format": FORMATS[check.manifest.suffix.lower()],
        "task": sp.task,
        "space": str(sp.path),
        "modalities": list(check.modalities),
        "rows": n,
        "columns": list(check.df.columns),
        "roles": {r: ",".join(c) for r, c in check.roles.items()},
        "chosen": list(meta.chosen),
        "target": meta.target,
        "classes": classes,
        "target_stats": target_stats,
        "modality_presence": modalities,
        "modality_combinations": dict(combos.most_common()),
        "bad_rows": {
            "count": len(bad_rows),
            "problems": len(check.bad),
            "first": [str(b) for b in check.bad if b.row in shown],
        },
        "dropped": [d for d in meta.bad_rows if d.startswith("dropped ")],
        "skipped": meta.skipped,
        "kept": n - meta.skipped,
        "on_bad_rows": ds.on_bad_rows,
        "split": {
            "source": meta.split_source,
            "column": check.roles.get("split", [None])[0],
            "group": check.roles.get("group", [None])[0],
            "seed": seed,
            "val_fraction": ds.val_fraction,
            "test_fraction": ds.test_fraction,
            **meta.split_counts,
        },
        "cache_hit": meta.cache_hit,
        "warnings": warnings,
    }


def repeated_files(check: Any) -> list[str]:
    """One warning per file input whose paths repeat across rows: a seeded split without
    groups can put rows of one file in train and in test, and the test score leaks."""
    out = []
    for spec in check.inputs:
        if not MODALITIES.get(spec.modality).file_based or isinstance(check.raw[spec.name], pd.DataFrame):
            continue
        counts = Counter(p for p in check.raw[spec.name] if p is not None)
        shared = {p: n for p, n in counts.items() if n > 1}
        if shared:
            column = spec.columns[0]
            out.append(
                f"{spec.name}: {len(shared)} file(s) appear in more than one row ({sum(shared.values())} rows; "
                f"e.g. {Path(next(iter(shared))).name!r} in {max(shared.values())}) and the manifest has no split "
                f"column: a seeded split can put rows of one file in train and in test, so the test score leaks. "
                f"Keep them in one split with --columns group={column} (or data.group: {column} in the space), "
                "or give a split column")
    return out


def inspect_manifest(
    manifest: str | Path,
    *,
    task: str | None = None,
    space: str | Path | Any | None = None,
    columns: str | dict[str, str] | None = None,
    seed: int = 0,
    console: Any = None,
    home: Path | None = None,
) -> None:
    """Prints rows, column roles, classes, modalities per row, bad rows and the split of a
    manifest as rich tables (see :func:`inspect_facts`)."""
    from rich.console import Console

    facts = inspect_facts(manifest, task=task, space=space, columns=columns, seed=seed, home=home)
    console = console or Console()
    for renderable in _render(facts):
        console.print(renderable)


def _space(manifest: str | Path, task: str | None, space: Any, flag: dict[str, str]) -> Any:
    """The space to check against: the one given, the task's, or the built-in task whose
    modalities all have a column (the one with most modalities)."""
    from autofusion.spaces.load import Space, builtin_tasks, load_space

    if isinstance(space, Space):
        return space
    if task is not None or space is not None:
        return load_space(task, space)
    path = Path(manifest)
    cols = list(read_manifest(path).columns)
    spaces = []
    for name in builtin_tasks():
        try:
            spaces.append(load_space(name))
        except ConfigError:
            continue  # a broken built-in file is reported by `spaces validate`, not here
    fits = [s for s in spaces if all(m in flag or candidate_columns(cols, m) for m in s.modalities)]
    if not fits:
        known = "; ".join(f"{s.task} ({', '.join(s.modalities)})" for s in spaces) or "none"
        raise DataError(
            f"{path}: no built-in task has a column for each of its modalities; columns: {', '.join(cols)}; "
            f"tasks: {known}; give --task or --space, or name columns with --columns"
        )
    most = max(len(s.modalities) for s in fits)
    best = [s for s in fits if len(s.modalities) == most]
    if len(best) > 1:
        raise DataError(
            f"{path}: the columns fit several tasks ({', '.join(s.task for s in best)}); pick one with --task"
        )
    return best[0]


def _render(f: dict[str, Any]) -> list[Any]:
    """Headings and tables; every value is plain text (a ``[x]`` in a cell is not markup)."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []

    def heading(text: str) -> None:
        out.append(Text(text, style="bold"))

    def table(*cols: str, left: int = 1) -> Table:
        t = Table(show_header=True)
        for i, name in enumerate(cols):
            t.add_column(name, justify="left" if i < left else "right")
        return t

    def row(t: Table, *cells: Any) -> None:
        t.add_row(*(Text(str(c)) for c in cells))

    heading(f"Manifest {f['manifest']}")
    summary = Table(show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    row(summary, "format", f["format"])
    row(summary, "rows", f["rows"])
    row(summary, "task", f"{f['task']} ({', '.join(f['modalities'])}); space {f['space']}")
    row(summary, "columns", ", ".join(f"{r}={c}" for r, c in f["roles"].items()))
    used = {c for cols in f["roles"].values() for c in cols.split(",")}
    unused = [c for c in f["columns"] if c not in used]
    if unused:
        row(summary, "unused columns", ", ".join(unused))
    row(summary, "target", f["target"] + (f", {len(f['classes'])} classes" if f["classes"] else ""))
    out.append(summary)

    if f["classes"]:
        heading("Classes (rows kept)" if f["target"] == "classification" else "Labels (rows kept that have each)")
        t = table("class", "total", *NAMES)
        for name, c in f["classes"].items():
            row(t, name, *(c[k] for k in ("total", *NAMES)))
        out.append(t)
    elif f["target_stats"]:
        s = f["target_stats"]
        out.append(Text(f"Target {f['roles']['label']} (rows kept): min {s['min']:.4g}, mean {s['mean']:.4g}, "
                        f"max {s['max']:.4g}, std {s['std']:.4g}"))

    heading("Modalities (all rows)")
    t = table("modality", "column", "present", "missing", "missing allowed", "unreadable", left=2)
    for m, p in f["modality_presence"].items():
        row(t, m, p["column"], p["present"], p["missing"], "yes" if p["missing_allowed"] else "no", p["unreadable"])
    out.append(t)
    if len(f["modality_combinations"]) > 1:
        heading("Rows by the modalities they have")
        t = table("modalities", "rows")
        for combo, count in f["modality_combinations"].items():
            row(t, combo, count)
        out.append(t)

    b = f["bad_rows"]
    if b["count"]:
        heading(f"Bad rows: {b['count']} of {f['rows']} (the first {min(b['count'], SHOWN_BAD_ROWS)})")
        t = table("problem")
        for line in b["first"]:
            row(t, line)
        out.append(t)
    else:
        heading("Bad rows: none")
    for note in f["dropped"]:
        out.append(Text(note))
    if f["skipped"]:
        stop = ("; with on_bad_rows: error (the space's setting) a search stops instead: "
                "pass --on-bad-rows skip" if f["on_bad_rows"] == "error" and b["count"] else "")
        out.append(Text(f"Skipped: {f['skipped']} of {f['rows']} rows would be skipped, {f['kept']} kept{stop}"))

    s = f["split"]
    how = {
        "seeded": f"seeded (seed {s['seed']}, val {s['val_fraction']:g}, test {s['test_fraction']:g})",
        "column": f"from the split column {s['column']!r}",
        "column+seeded": f"from the split column {s['column']!r}, the rest seeded (seed {s['seed']})",
    }[s["source"]]
    if s.get("group"):
        how += f", grouped by {s['group']!r} (a group's rows stay in one split)"
    heading(f"Split: {how}")
    t = table(*NAMES, left=0)
    row(t, *(s[n] for n in NAMES))
    out.append(t)
    for w in f.get("warnings", []):
        out.append(Text(f"Warning: {w}", style="bold yellow"))
    return out

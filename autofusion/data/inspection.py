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
from rich.table import Table
from rich.text import Text

from autofusion.data.manifest import parse_columns_flag
from autofusion.data.reading import COMPRESSED, format_of, sheet_note
from autofusion.data.prepare import PreparedData, check_rows, split_rows
from autofusion.data.rows import RowCheck
from autofusion.data.splits import NAMES
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
    target: str | None = None,
) -> dict[str, Any]:
    """The facts ``data inspect`` prints, as a JSON-serialisable dict.

    Args:
        manifest: the CSV/TSV/JSONL/JSON/Parquet file.
        task: a built-in task; its space file gives the modalities and data settings.
        space: a space file (or a loaded ``Space``); with neither, the space assembled from
            the manifest's columns, as ``search --data`` alone assembles it.
        columns: ``ROLE=COL,...`` or a role -> column dict, as ``--columns``.
        seed: the seed of the split, as ``search --seed``.
        home: where the decode cache lives (default: :func:`autofusion.home.autofusion_home`).
        target: ``--target`` (classification, regression, multilabel; None: from the labels).

    Raises:
        DataError: the manifest cannot be used at all.
    """
    flag = parse_columns_flag(columns) if isinstance(columns, str) or columns is None else dict(columns)
    sp = _space(manifest, task, space, flag, home, target)
    check = check_rows(manifest, sp, columns=flag, home=home)
    data = split_rows(check, sp, on_bad_rows="skip", seed=seed)
    meta, n = data.meta, len(check.df)
    return {
        "manifest": str(check.manifest),
        "format": ", ".join(filter(None, [format_of(check.manifest), _compression(check.manifest),
                                          sheet_note(check.df)])),
        "task": sp.task,
        "space": str(sp.path),
        "modalities": list(check.modalities),
        "rows": n,
        "columns": list(check.df.columns),
        "roles": {r: ",".join(c) for r, c in check.roles.items()},
        "chosen": list(meta.chosen),
        "target": meta.target,
        **_label_facts(data),
        "modality_presence": _presence(check),
        "modality_combinations": _combinations(check),
        "bad_rows": _bad_row_facts(check),
        "dropped": [d for d in meta.bad_rows if d.startswith("dropped ")],
        "skipped": meta.skipped,
        "kept": n - meta.skipped,
        "on_bad_rows": sp.file.data.on_bad_rows,
        "split": _split_facts(check, data, sp.file.data, seed),
        "cache_hit": meta.cache_hit,
        "warnings": [] if "split" in check.roles or "group" in check.roles else repeated_files(check),
    }


def _compression(manifest: Path) -> str | None:
    """``gz compressed`` for ``m.csv.gz``; None for a plain file."""
    suffix = manifest.suffix.lower()
    return f"{suffix[1:]} compressed" if suffix in COMPRESSED else None


def _label_facts(data: PreparedData) -> dict[str, Any]:
    """``classes`` (per class: rows kept, in all and per split) or ``target_stats`` (a regression's)."""
    meta = data.meta
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
    return {"classes": classes, "target_stats": target_stats}


def _presence(check: RowCheck) -> dict[str, dict[str, Any]]:
    """Per input: its columns, modality, and how many rows have it, lack it or could not be read."""
    n = len(check.df)
    # A bad row of a modality whose cell is not empty is a file that could not be decoded.
    unreadable = Counter(b.field for b in check.bad if b.field in check.present and check.present[b.field][b.row - 1])
    return {
        i.name + (" (joined)" if i.joined else ""): {
            "column": ",".join(i.columns),
            "modality": i.modality,
            "present": int(check.present[i.name].sum()),
            "missing": int(n - check.present[i.name].sum()),
            "missing_allowed": i.modality in check.allow_missing,
            "unreadable": int(unreadable.get(i.name, 0)),
        }
        for i in check.inputs
    }


def _combinations(check: RowCheck) -> dict[str, int]:
    """Rows per set of inputs present (``image+text``, ``(none)``), most common first."""
    combos = Counter(
        "+".join(i.name for i in check.inputs if check.present[i.name][r]) or "(none)" for r in range(len(check.df))
    )
    return dict(combos.most_common())


def _bad_row_facts(check: RowCheck) -> dict[str, Any]:
    """How many rows are bad, how many problems, and the problems of the first rows shown."""
    bad_rows = check.bad_rows
    shown = set(bad_rows[:SHOWN_BAD_ROWS])
    return {
        "count": len(bad_rows),
        "problems": len(check.bad),
        "first": [str(b) for b in check.bad if b.row in shown],
    }


def _split_facts(check: RowCheck, data: PreparedData, ds: Any, seed: int) -> dict[str, Any]:
    """Where the split comes from (column, seed, group), its fractions and rows per split."""
    meta = data.meta
    return {
        "source": meta.split_source,
        "column": check.roles.get("split", [None])[0],
        "group": check.roles.get("group", [None])[0],
        "seed": seed,
        "val_fraction": ds.val_fraction,
        "test_fraction": ds.test_fraction,
        **meta.split_counts,
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
    target: str | None = None,
) -> None:
    """Prints rows, column roles, classes, modalities per row, bad rows and the split of a
    manifest as rich tables (see :func:`inspect_facts`)."""
    from rich.console import Console

    facts = inspect_facts(manifest, task=task, space=space, columns=columns, seed=seed, home=home, target=target)
    console = console or Console()
    for renderable in _render(facts):
        console.print(renderable)


def _space(manifest: str | Path, task: str | None, space: Any, flag: dict[str, list[str]],
           home: Path | None, target: str | None) -> Any:
    """The space to check against: the one given, the task's, or (with neither) the one
    assembled from the manifest's columns, as ``search --data`` alone assembles it."""
    from autofusion.spaces.auto import write_auto_space
    from autofusion.spaces.load import Space, load_space, with_target

    if isinstance(space, Space):
        return with_target(space, target)
    if task is not None or space is not None:
        return with_target(load_space(task, space), target)
    return write_auto_space(manifest, flag, home=home, target=target)


def _render(f: dict[str, Any]) -> list[Any]:
    """Headings and tables; every value is plain text (a ``[x]`` in a cell is not markup)."""
    return [*_summary(f), *_labels(f), *_modalities(f), *_bad_rows(f), *_split(f)]


def _heading(text: str) -> Text:
    """A section's bold heading."""
    return Text(text, style="bold")


def _table(*cols: str, left: int = 1) -> Table:
    """A table with a header; the first ``left`` columns left-aligned, the rest right-aligned."""
    t = Table(show_header=True)
    for i, name in enumerate(cols):
        t.add_column(name, justify="left" if i < left else "right")
    return t


def _row(t: Table, *cells: Any) -> None:
    """Adds a row of cells as plain text (never markup)."""
    t.add_row(*(Text(str(c)) for c in cells))


def _summary(f: dict[str, Any]) -> list[Any]:
    """The manifest's heading and its format, rows, task, columns (and unused ones) and target."""
    summary = Table(show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    _row(summary, "format", f["format"])
    _row(summary, "rows", f["rows"])
    _row(summary, "task", f"{f['task']} ({', '.join(f['modalities'])}); space {f['space']}")
    _row(summary, "columns", ", ".join(f"{r}={c}" for r, c in f["roles"].items()))
    used = {c for cols in f["roles"].values() for c in cols.split(",")}
    unused = [c for c in f["columns"] if c not in used]
    if unused:
        _row(summary, "unused columns", ", ".join(unused))
    _row(summary, "target", f["target"] + (f", {len(f['classes'])} classes" if f["classes"] else ""))
    for i, line in enumerate(f.get("chosen") or []):  # what a search prints before its trials, as it would
        _row(summary, "read as" if i == 0 else "", line)
    return [_heading(f"Manifest {f['manifest']}"), summary]


def _labels(f: dict[str, Any]) -> list[Any]:
    """Rows kept per class and split, or a regression target's range (nothing for neither)."""
    if f["classes"]:
        t = _table("class", "total", *NAMES)
        for name, c in f["classes"].items():
            _row(t, name, *(c[k] for k in ("total", *NAMES)))
        heading = "Classes (rows kept)" if f["target"] == "classification" else "Labels (rows kept that have each)"
        return [_heading(heading), t]
    if f["target_stats"]:
        s = f["target_stats"]
        return [Text(f"Target {f['roles']['label']} (rows kept): min {s['min']:.4g}, mean {s['mean']:.4g}, "
                     f"max {s['max']:.4g}, std {s['std']:.4g}")]
    return []


def _modalities(f: dict[str, Any]) -> list[Any]:
    """Each input's presence, and (when rows differ in it) rows per set of inputs present."""
    t = _table("modality", "column", "present", "missing", "missing allowed", "unreadable", left=2)
    for m, p in f["modality_presence"].items():
        _row(t, m, p["column"], p["present"], p["missing"], "yes" if p["missing_allowed"] else "no", p["unreadable"])
    out: list[Any] = [_heading("Modalities (all rows)"), t]
    if len(f["modality_combinations"]) > 1:
        t = _table("modalities", "rows")
        for combo, count in f["modality_combinations"].items():
            _row(t, combo, count)
        out += [_heading("Rows by the modalities they have"), t]
    return out


def _bad_rows(f: dict[str, Any]) -> list[Any]:
    """The first bad rows' problems, the rows dropped, and how many rows a search would skip."""
    b = f["bad_rows"]
    if b["count"]:
        t = _table("problem")
        for line in b["first"]:
            _row(t, line)
        first = min(b["count"], SHOWN_BAD_ROWS)
        out: list[Any] = [_heading(f"Bad rows: {b['count']} of {f['rows']} (the first {first})"), t]
    else:
        out = [_heading("Bad rows: none")]
    out += [Text(note) for note in f["dropped"]]
    if f["skipped"]:
        stop = ("; with on_bad_rows: error (the space's setting) a search stops instead: "
                "pass --on-bad-rows skip" if f["on_bad_rows"] == "error" and b["count"] else "")
        out.append(Text(f"Skipped: {f['skipped']} of {f['rows']} rows would be skipped, {f['kept']} kept{stop}"))
    return out


def _split(f: dict[str, Any]) -> list[Any]:
    """How the rows are split, rows per split, then the warnings."""
    s = f["split"]
    how = {
        "seeded": f"seeded (seed {s['seed']}, val {s['val_fraction']:g}, test {s['test_fraction']:g})",
        "column": f"from the split column {s['column']!r}",
        "column+seeded": f"from the split column {s['column']!r}, the rest seeded (seed {s['seed']})",
    }[s["source"]]
    if s.get("group"):
        how += f", grouped by {s['group']!r} (a group's rows stay in one split)"
    t = _table(*NAMES, left=0)
    _row(t, *(s[n] for n in NAMES))
    return [_heading(f"Split: {how}"), t, *(Text(f"Warning: {w}", style="bold yellow") for w in f.get("warnings", []))]

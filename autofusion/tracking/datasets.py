"""Which data a run saw, in MLflow's dataset lineage (``mlflow.data``, ``log_inputs``).

The search run and every trial's run carry three dataset inputs, one per split, with the
split as the input's context (``training``, ``validation``, ``test``): named after the
manifest and the split (``houses-train``), the data fingerprint as digest (the manifest's
bytes and its files' sizes and times: the same digest means the same data), the manifest's
columns as schema and its rows in the split as profile, and the manifest's path as source.
The MLflow UI fills its runs table's Dataset column from them, and ``autofusion promote``
says on a registered version which data it was tested on (``tested_on``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

# Light to import (``autofusion promote`` reads ``tested_on``): pandas and MLflow load in the functions.
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}  # split -> the input's context tag
CONTEXT_TAG = "mlflow.data.context"  # MLflow's own key (mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT)
GENERIC = frozenset({"manifest", "data", "dataset", "index", "labels", "metadata", "train", "all"})


def dataset_name(manifest: str | Path) -> str:
    """The manifest's name: its file's stem, or its folder's name for a generic one (``houses``
    for ``houses/manifest.csv``)."""
    p = Path(manifest)
    return p.parent.name if p.stem.lower() in GENERIC and p.parent.name else p.stem


def split_inputs(data: Any) -> list[Any]:
    """The splits of ``data`` (a ``PreparedData``) as MLflow dataset inputs
    (``mlflow.entities.DatasetInput``)."""
    import mlflow.data
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from autofusion.data.reading import read_manifest
    from autofusion.data.splits import NAMES

    meta = data.meta
    df = read_manifest(meta.manifest)
    label = (meta.columns.get("label") or [None])[0]
    out = []
    for code, split in enumerate(NAMES):
        idx = data.indices(code)
        if len(idx) == 0:
            continue
        rows = df.iloc[data.row_ids[idx] - 1].reset_index(drop=True)
        name = f"{dataset_name(meta.manifest)}-{split}"
        try:
            with warnings.catch_warnings():  # "the source can be interpreted in multiple ways": both mean a file
                warnings.simplefilter("ignore", UserWarning)
                d = mlflow.data.from_pandas(rows, source=str(meta.manifest), name=name, digest=meta.fingerprint,
                                            targets=label if label in rows.columns else None).to_dict()
        except Exception:  # noqa: BLE001 - cells MLflow cannot type (nested lists): no schema then
            d = {"name": name, "digest": meta.fingerprint, "source_type": "local",
                 "source": json.dumps({"uri": str(meta.manifest)}), "profile": json.dumps({"num_rows": len(rows)})}
        entity = Dataset(name=d["name"], digest=d["digest"], source_type=d["source_type"], source=d["source"],
                         schema=d.get("schema"), profile=d.get("profile"))
        out.append(DatasetInput(entity, tags=[InputTag(CONTEXT_TAG, CONTEXTS[split])]))
    return out


def tested_on(run: Any) -> str:
    """The test dataset a run logged, as ``name (digest ..., N rows)``; empty when it has none."""
    for di in getattr(run.inputs, "dataset_inputs", None) or []:
        if any(t.key == CONTEXT_TAG and t.value == CONTEXTS["test"] for t in di.tags):
            rows = json.loads(di.dataset.profile or "{}").get("num_rows")
            return f"{di.dataset.name} (digest {di.dataset.digest}" + (f", {rows} rows)" if rows else ")")
    return ""

"""The feature stage, between the data and the trials: every feature extractor the space's
encoder choices need (``autofusion.models.extractors``) is fitted on the training rows and
applied once per search to every distinct cell (rows that share a file or a text index into
its arrays: ``data.arrays.IndexedRows``), so all trials share its arrays and none recomputes
them.

A pretrained encoder's extractor finds its weights here (a missing one stops the search
before any MLflow run exists) and reads its preprocessing from the model. When the space lets
it be frozen (``train.strategy``: ``frozen`` or ``staged``), its frozen outputs are computed
once per dataset and distinct cell, in batches sized to the device, and written to disk in
chunks (float16, memory-mapped; a progress bar on a terminal; an interrupted run resumes at
its last chunk) under ``<home>/cache/features/<key>``, beside the decode cache, keyed by the
data, the model's weights and the preprocessing: a second search reuses them without a
forward pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from autofusion.data.arrays import IndexedRows, distinct_cells, per_distinct
from autofusion.data.cache import Part, build_entry, feature_dir
from autofusion.data.prepare import PreparedData
from autofusion.data.splits import TRAIN
from autofusion.home import autofusion_home
from autofusion.models import ENCODERS
from autofusion.models.build import feature_keys
from autofusion.models.encoders._classical import Standardised
from autofusion.models.encoders._embed import embed_chunk
from autofusion.models.encoders._pretrained import FrozenOutputs
from autofusion.models.encoders.pair import add_pairs
from autofusion.models.extractors import (
    feature_key,
    feature_params,
    frozen_key,
    input_key,
)
from autofusion.spaces.schema import Distribution
from autofusion.trial import PAIR, STRATEGIES, TrialConfig

MODEL_INPUTS_CHUNK = 256  # distinct cells per chunk of model inputs (images at the model's size) written


def build_features(data: PreparedData, space: object, *, home: Path | None = None, quiet: bool = True) -> list[str]:
    """Fills ``data.features``, ``data.extractors`` and ``data.meta.feature_infos`` for every
    encoder choice of ``space`` that has an extractor; returns one line per extractor built
    (and per feature cache built or reused).

    Raises:
        ConfigError: pretrained weights the space names are not on this machine.
    """
    notes = []
    strategies = space_strategies(space)
    for m in data.meta.modalities:
        for name, params in space.file.encoders[m].choices.items():
            if PAIR in name:  # two encoders on one input: their halves are choices of their own
                continue
            cls = ENCODERS[m].get(name)
            check = getattr(cls, "check_weights", None)  # torchvision's pretrained: true
            if check is not None:
                check(params)
            if cls.extractor is None:
                continue
            consts = {k: v for k, v in params.items() if not isinstance(v, Distribution)}
            if getattr(cls, "pretrained", False):
                notes += add_pretrained(data, m, name, consts, strategies, home=home or autofusion_home(), quiet=quiet)
                continue
            t0 = time.perf_counter()
            key, built = add_extractor(data, m, name, consts, home=home, quiet=quiet)
            if built:
                facts = ", ".join(f"{k} {v}" for k, v in data.meta.feature_infos[key].items())
                notes.append(f"{m} {name}: fitted on the training rows in {time.perf_counter() - t0:.1f}s ({facts})")
    add_pairs(data, space)  # a pair's halves' arrays side by side (models/encoders/pair.py)
    return notes


def space_strategies(space: object) -> set[str]:
    """The training strategies the space's trials may use (``frozen`` when it sets none)."""
    value = space.file.train.strategy
    if value is None:
        return {"frozen"}
    if isinstance(value, Distribution):
        return {str(v) for v in value.choices or []}
    return {str(value)} & set(STRATEGIES) or {"frozen"}


def add_extractor(data: PreparedData, modality: str, encoder: str, params: dict, *, transform: bool = True,
                  home: Path | None = None, quiet: bool = True) -> tuple[str, bool]:
    """Fits ``encoder``'s extractor on the training rows of ``modality``'s inputs and (unless
    ``transform`` is False) applies it to every distinct cell; returns its key and whether it
    was built now (False: it already was). With ``home``, the per-file features of a
    standardised extractor (pixel and MFCC statistics) come from the feature cache."""
    cls = ENCODERS[modality].get(encoder)
    key = feature_key(encoder, cls, params)
    if key in data.extractors:
        return key, False
    meta = data.meta
    extractor = cls.extractor(modality, meta.prep[modality], feature_params(cls, params))
    names = [i.name for i in meta.input_specs if i.modality == modality]
    if transform and home is not None and isinstance(extractor, Standardised):
        _add_standardised(data, extractor, names, key, home, quiet)
    else:
        train = [data.raw[n][_train_rows(data, n)] for n in names]
        extractor.fit(pd.concat(train, ignore_index=True))
        if transform:
            for n in names:
                data.features[f"{n}|{key}"] = per_distinct(data.raw[n], extractor.transform)
    data.extractors[key] = extractor
    meta.feature_infos[key] = extractor.info(meta.infos[modality])
    return key, True


def _train_rows(data: PreparedData, name: str) -> np.ndarray:
    """The training rows where input ``name`` is present (what extractors are fitted on)."""
    return (data.split == TRAIN) & data.present[name]


def _rows_key(data: PreparedData) -> str:
    """The rows a search kept, as part of a feature cache key."""
    return hashlib.sha256(data.row_ids.tobytes()).hexdigest()[:16]


def _add_standardised(data: PreparedData, extractor: Standardised, names: list[str], key: str, home: Path,
                      quiet: bool) -> None:
    """``extractor``'s features of each distinct file from the feature cache (computed on a
    miss), its mean and deviation fitted on the training rows' features, and its arrays
    standardised once per distinct file: a second search on the same data decodes no file for
    it, and a first search decodes each file once, not once to fit and again to transform."""
    def features(cells: pd.Series, start: int, end: int) -> dict:
        return {"x": extractor.features(list(cells))}

    raw, rows = {}, _rows_key(data)
    for n in names:
        folder = feature_dir(home, data.meta.fingerprint, rows, n, extractor.features_identity())
        raw[n] = _entry(folder, data.raw[n], features, f"{key} ({n}): features", quiet)[0]["x"]
    extractor.fit_features(np.concatenate([raw[n][_train_rows(data, n)] for n in names]))
    for n in names:
        data.features[f"{n}|{key}"] = {"x": IndexedRows(extractor.standardise(raw[n].values), raw[n].index)}


def add_pretrained(data: PreparedData, modality: str, encoder: str, params: dict, strategies: set[str], *,
                   home: Path, quiet: bool = True) -> list[str]:
    """A pretrained encoder's model inputs (only when a trial may fine-tune it) and, when a
    trial may freeze it, its frozen outputs: both from the feature cache, computed on a miss
    once per distinct cell, chunk by chunk (an interrupted run resumes)."""
    inputs_key, built = add_extractor(data, modality, encoder, params, transform=False)
    inputs = data.extractors[inputs_key]
    meta = data.meta
    names = [i.name for i in meta.input_specs if i.modality == modality]
    rows = _rows_key(data)
    notes = []
    if built:
        pre = ", ".join(f"{k} {v}" for k, v in inputs.preprocessing().items())
        notes.append(f"{modality} {encoder}: {inputs.weights.name} ({inputs.weights.identity}); from the model: {pre}")
    if strategies & {"staged", "finetune"}:  # e.g. images decoded once at the model's size, memory-mapped
        for n in names:
            folder = feature_dir(home, meta.fingerprint, rows, n, inputs.identity())
            data.features[f"{n}|{inputs_key}"] = _entry(folder, data.raw[n],
                                                         lambda cells, s, e: inputs.fixed(inputs.transform(cells)),
                                                         f"{encoder} ({n}): model inputs", quiet)[0]
    key = frozen_key(inputs_key)
    if not strategies & {"frozen", "staged"} or key in data.extractors:
        return notes
    cls = ENCODERS[modality].get(encoder)
    base = meta.infos[modality]
    frozen = FrozenOutputs(modality, meta.prep[modality], feature_params(cls, params), encoder_cls=cls, inputs=inputs,
                           info=replace(base, extra={**base.extra, **meta.feature_infos[inputs_key]}))
    t0, built_any, folders = time.perf_counter(), False, []
    run = frozen.embedder()  # the backbone is loaded on its first call: never on a cache hit
    for n in names:
        folder = feature_dir(home, meta.fingerprint, rows, n, frozen.identity())
        given = data.features.get(f"{n}|{inputs_key}")  # the model inputs, when cached above

        def outputs(cells: pd.Series, start: int, end: int, given: dict | None = given) -> dict:
            x = {k: np.asarray(v.values[start:end]) for k, v in given.items()} if given else inputs.transform(cells)
            return run(x)

        data.features[f"{n}|{key}"], was_built = _entry(folder, data.raw[n], outputs,
                                                        f"{encoder} ({n}): frozen outputs", quiet, embed_chunk())
        built_any |= was_built
        folders.append(folder)
    del run  # the backbone
    status, seconds = "built" if built_any else "reused", time.perf_counter() - t0
    tokens = data.features[f"{names[0]}|{key}"]["tokens"]
    data.extractors[key] = frozen
    meta.feature_infos[key] = {"modality": modality, "encoder": encoder, "cache": status, "seconds": round(seconds, 2),
                               "tokens": int(tokens.shape[1]), "folders": [str(f) for f in folders]}
    notes.append(f"{modality} {encoder}: frozen outputs {status} in {seconds:.1f}s ({len(data.row_ids)} rows, "
                 f"{tokens.distinct} distinct, {tokens.shape[1]} tokens of {tokens.shape[2]}, float16, "
                 f"in {folders[0].parent})")
    return notes


def _entry(folder: Path, cells: pd.Series, fn: Callable[[pd.Series, int, int], dict], label: str, quiet: bool,
           chunk: int = MODEL_INPUTS_CHUNK) -> tuple[dict[str, IndexedRows], bool]:
    """The arrays ``fn`` makes (from the distinct cells ``start..end-1``) for every distinct cell
    of ``cells``, from the cache entry ``folder`` or made now, ``chunk`` cells at a time; as rows
    over ``cells``. Returns them and whether they were made now."""
    codes, uniques = distinct_cells(cells)

    def produce(start: int, end: int) -> tuple[dict, list]:
        return fn(pd.Series(uniques[start:end], dtype=object), start, end), []

    with _progress(len(uniques), f"{label}, {len(uniques)} distinct of {len(cells)} rows", quiet) as advance:
        arrays, _, built = build_entry(folder, {"rows": Part(len(uniques), produce, chunk)}, advance)
    return {k: IndexedRows(v, codes) for k, v in arrays.items()}, built


@contextlib.contextmanager
def _progress(total: int, label: str, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (nothing in logs, pipes or quiet runs): yields its advance."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def cache_tags(meta: object) -> dict[str, str]:
    """The search run's tags: each feature cache it used and whether it was built or reused
    (``autofusion.feature_cache.text.hf_text: reused``)."""
    return {f"autofusion.feature_cache.{i['modality']}.{i['encoder']}": i["cache"]
            for i in meta.feature_infos.values() if "cache" in i}


def pretrained_params(meta: object) -> dict[str, str]:
    """The search run's params: each pretrained encoder's weights and the preprocessing its
    model decided (``pretrained.text.hf_text-1a2b.max_length: 128``)."""
    out = {}
    for key, info in meta.feature_infos.items():
        if "preprocessing" in info:
            out[f"pretrained.{key}.weights"] = info["weights"]
            out.update({f"pretrained.{key}.{k}": str(v) for k, v in info["preprocessing"].items()})
    return out


def trial_tags(config: dict, meta: object) -> dict[str, str]:
    """A trial's tags: the weights and preprocessing of the pretrained encoders it picked
    (``autofusion.pretrained.text``), as JSON; none for a trial without one."""
    try:
        keys = feature_keys(TrialConfig.from_flat(config, list(meta.modalities)), meta)
    except Exception:  # noqa: BLE001 - a config that does not parse has no model to describe
        return {}
    out = {}
    for name, key in keys.items():
        info = meta.feature_infos.get(input_key(key)) if key else None
        if info and "preprocessing" in info:
            out[f"autofusion.pretrained.{name}"] = json.dumps({"weights": info["weights"], **info["preprocessing"]})
    return out

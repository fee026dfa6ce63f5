"""Search-space files: the built-in ones load and match the demo data, the define-by-run
function samples the same configurations through Optuna and through Ray's OptunaSearch,
conditional parameters stay conditional, flat configurations round-trip through
TrialConfig, and every invalid file fails with one exact, located message."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from autofusion.errors import ConfigError
from autofusion.spaces import TrialConfig, builtin_tasks, define_by_run, load_space
from autofusion.spaces.load import SPACES_DIR
from autofusion.spaces.sample import CHOICE_SECTIONS
from autofusion.spaces.schema import Distribution, KeyPathError

optuna.logging.set_verbosity(optuna.logging.WARNING)

TASKS = builtin_tasks()
MAX_EPOCHS = 8


def sample(task: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` flat configurations of ``task`` drawn with Optuna's seeded RandomSampler."""
    return _sample(load_space(task), n, seed, MAX_EPOCHS)


def sample_file(path: Path, n: int, seed: int = 0) -> list[dict[str, Any]]:
    space = load_space(space=path)
    return _sample(space, n, seed, space.file.search.max_epochs)


def _sample(space, n: int, seed: int, max_epochs: int) -> list[dict[str, Any]]:
    fn = define_by_run(space, max_epochs)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        consts = fn(trial)
        out.append({**trial.params, **consts})
    return out


def choice_keys(space) -> dict[str, tuple[str, Any]]:
    """Flat key of each choice -> (prefix of its children, its section)."""
    f = space.file
    keys = {f"encoder.{m}": (f"encoder.{m}", f.encoders[m]) for m in space.modalities}
    for name in CHOICE_SECTIONS:
        sec = getattr(f, name)
        if sec is not None:
            keys[f"{name}.type"] = (name, sec)
    return keys


# ---------------------------------------------------------------- built-in files


def test_builtin_tasks_are_the_demo_tasks():
    from autofusion.data.demo import TASKS as DEMO_TASKS

    assert TASKS == sorted(DEMO_TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_builtin_space_loads(task):
    from autofusion.data import demo

    space = load_space(task)
    assert space.task == task
    assert space.path == SPACES_DIR / f"{task}.yaml"
    assert tuple(space.modalities) == demo.TASKS[task]
    # Sizes and lengths are left to the data (tests/unit/test_prep_choice.py: the demo's fit it exactly).
    for m, prep in space.prep.items():
        assert not {k for k in ("size", "max_length", "sample_rate", "seconds", "frames")
                    if getattr(prep, k, None) is not None}, m
    # Cheap on 2 CPU cores: trials stop when they converge, and the search within its budget.
    s = space.file.search
    assert s.num_trials <= 16 and s.cpus_per_trial == 1 and space.file.train.patience == 3
    assert s.scheduler == "fifo" and s.max_epochs <= 30 and s.time_budget is not None and s.time_budget <= 600
    assert len(space.file.fusion.choices) >= 7
    assert space.raw_text().startswith("# Search space for")


@pytest.mark.parametrize("task", TASKS)
def test_builtin_space_loads_from_its_path_too(task):
    by_path = load_space(task, space=SPACES_DIR / f"{task}.yaml")
    assert by_path.file == load_space(task).file


def test_readme_tables_are_generated_from_the_registries():
    """The tables of what can be picked come from the registries; a new component or parameter
    shows up (or this fails until ``autofusion spaces components --write`` is run)."""
    from autofusion.models import ENCODERS, FUSIONS
    from autofusion.spaces.docs import generated_block

    readme = (SPACES_DIR / "README.md").read_text(encoding="utf-8")
    assert generated_block() in readme, (
        "search_spaces/README.md is stale: run autofusion spaces components --write search_spaces/README.md")
    for reg in [*ENCODERS.values(), FUSIONS]:  # and it does name them all
        for name in reg.names():
            assert f"`{name}`" in generated_block()


# ---------------------------------------------------------------- Optuna == Ray OptunaSearch


@pytest.mark.parametrize("task", TASKS)
def test_optuna_and_ray_optuna_search_sample_the_same(task):
    """Ray's testConvertOptuna: the same define-by-run function and seeded sampler give the
    same configurations directly and through ``ray.tune.search.optuna.OptunaSearch``."""
    from ray.tune.search.optuna import OptunaSearch

    n = 6
    searcher = OptunaSearch(
        space=define_by_run(load_space(task), MAX_EPOCHS),
        metric="m",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    through_ray = [searcher.suggest(f"trial_{i}") for i in range(n)]
    direct = sample(task, n, seed=0)
    assert through_ray == direct
    assert len({repr(sorted(c.items())) for c in direct}) > 1  # it does sample


# ---------------------------------------------------------------- conditional parameters


@pytest.mark.parametrize("task", TASKS)
def test_parameters_exist_only_for_the_choice_picked(task):
    space = load_space(task)
    keys = choice_keys(space)
    picked: dict[str, set[str]] = {k: set() for k in keys}
    flats = sample(task, 150, seed=1)
    assert keys and len(flats) == 150
    for flat in flats:
        expected: set[str] = set()
        for key, (prefix, section) in keys.items():
            name = flat[key]
            picked[key].add(name)
            assert name in section.choices
            expected.add(key)
            expected |= {f"{prefix}.{name}.{p}" for p in section.choices[name]}
            expected |= {f"{prefix}.{p}" for p in section.shared}
            others = [c for c in section.choices if c != name]
            stray = [k for k in flat for c in others if k.startswith(f"{prefix}.{c}.")]
            assert not stray, f"{key}={name!r} but the trial has {stray}"
        expected |= {"head.hidden", "head.dropout", "train.batch_size", "train.epochs",
                     "train.modality_dropout", "train.grad_clip", "train.amp", "train.augment", "train.patience"}
        assert set(flat) == expected
    for key, (_, section) in keys.items():  # every choice is reachable
        assert picked[key] == set(section.choices), key


@pytest.mark.parametrize("task", TASKS)
def test_sampled_values_lie_in_their_distributions(task):
    space = load_space(task)
    f = space.file
    where: dict[str, Any] = {}
    for key, (prefix, section) in choice_keys(space).items():
        for c, params in section.choices.items():
            where.update({f"{prefix}.{c}.{p}": v for p, v in params.items()})
        where.update({f"{prefix}.{p}": v for p, v in section.shared.items()})
    where.update({"head.hidden": f.head.hidden, "head.dropout": f.head.dropout})
    where.update({f"train.{k}": getattr(f.train, k) for k in ("batch_size", "modality_dropout", "grad_clip", "amp")})
    flats = sample(task, 60, seed=2)
    assert len(flats) == 60 and all(set(flat) & set(where) for flat in flats)  # every draw has values to check
    for flat in flats:
        for k, v in flat.items():
            if k in where:
                d = where[k]
                assert d.contains(v) if isinstance(d, Distribution) else v == d, (k, v, d)
                if isinstance(d, Distribution) and d.type == "int":
                    assert isinstance(v, int) and (v - d.low) % (d.step or 1) == 0


def test_single_choice_sections_are_constants_not_searched(tmp_path):
    path = write_space(tmp_path, {("fusion", "choices"): {"mid": {"dim": 32}}})
    fn = define_by_run(load_space(space=path), 3)
    trial = optuna.create_study().ask()
    consts = fn(trial)
    assert "fusion.type" not in trial.params
    assert consts["fusion.type"] == "mid" and consts["fusion.mid.dim"] == 32
    assert consts["train.epochs"] == 3


# ---------------------------------------------------------------- TrialConfig round trip


def to_flat(tc: TrialConfig, modalities: list[str]) -> dict[str, Any]:
    """The inverse of ``TrialConfig.from_flat`` for files that set every section."""
    flat: dict[str, Any] = {}

    def put(key: str, prefix: str, choice) -> None:
        flat[key] = choice.name
        flat.update({f"{prefix}.{choice.name}.{p}": v for p, v in choice.params.items()})

    for m in modalities:
        put(f"encoder.{m}", f"encoder.{m}", tc.encoders[m])
    put("fusion.type", "fusion", tc.fusion)
    put("loss.type", "loss", tc.loss)
    put("optimizer.type", "optimizer", tc.optimizer)
    put("lr_schedule.type", "lr_schedule", tc.lr_schedule)
    flat.update({
        "fusion.weights": tc.fusion_weighting, "head.hidden": tc.head_hidden, "head.dropout": tc.head_dropout,
        "loss.aux_weight": tc.aux_weight, "optimizer.lr": tc.lr, "optimizer.weight_decay": tc.weight_decay,
        "lr_schedule.warmup_epochs": tc.warmup_epochs, "train.batch_size": tc.batch_size or "auto",
        "train.epochs": tc.epochs, "train.modality_dropout": tc.modality_dropout,
        "train.grad_clip": tc.grad_clip, "train.amp": tc.amp, "train.augment": tc.augment,
    })
    if tc.patience:
        flat["train.patience"] = tc.patience
    return flat


@pytest.mark.parametrize("task", TASKS)
def test_trial_config_round_trips(task):
    modalities = load_space(task).modalities
    flats = sample(task, 40, seed=3)
    assert len(flats) == 40
    for flat in flats:
        tc = TrialConfig.from_flat(flat, modalities)
        assert to_flat(tc, modalities) == flat
        assert TrialConfig.from_flat(to_flat(tc, modalities), modalities) == tc
        assert pickle.loads(pickle.dumps(tc)) == tc
        assert set(tc.to_dict()["encoders"]) == set(modalities)


def test_trial_config_caps_epochs_and_names_a_missing_key():
    flat = sample("image_text", 1)[0]
    assert TrialConfig.from_flat(flat, ["image", "text"], max_epochs=2).epochs == 2
    del flat["optimizer.lr"]
    with pytest.raises(ConfigError) as exc:
        TrialConfig.from_flat(flat, ["image", "text"])
    assert str(exc.value) == "trial configuration lacks 'optimizer.lr'"


# ---------------------------------------------------------------- invalid files

BASE: dict[str, Any] = {
    "task": "image_text",
    "modalities": {"image": {"size": 32}, "text": {"max_length": 16}},
    "encoders": {
        "image": {"choices": {"small_cnn": {"width": {"type": "int", "low": 16, "high": 32, "step": 16}}}},
        "text": {"choices": {"embedding_bag": {"dim": 32}, "bigru": {"hidden": 32}}},
    },
    "fusion": {
        "choices": {
            "mid": {"dim": 32},
            "attention": {"heads": {"type": "categorical", "choices": [1, 2]}},
            "film": {"target": "image"},
        },
        "weights": "fixed",
    },
    "loss": {"choices": {"cross_entropy": {}, "focal": {"gamma": {"type": "float", "low": 1.0, "high": 3.0}}}},
    "optimizer": {
        "choices": {"adam": {}, "sgd": {"momentum": 0.9}},
        "lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True},
        "weight_decay": 0.0,
    },
    "lr_schedule": {"choices": ["none", "cosine"], "warmup_epochs": 0},
    "head": {"hidden": 64, "dropout": 0.1},
    "train": {"batch_size": 32},
    "search": {"num_trials": 2, "max_epochs": 2},
}

DELETE = object()


def write_space(tmp_path: Path, edits: dict[tuple[str, ...], Any], name: str = "space.yaml") -> Path:
    """BASE with ``edits`` (key path -> new value, or DELETE) written to ``tmp_path``."""
    data = copy.deepcopy(BASE)
    for keys, value in edits.items():
        d = data
        for k in keys[:-1]:
            d = d[k]
        if value is DELETE:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_base_file_is_valid(tmp_path):
    space = load_space(space=write_space(tmp_path, {}))
    assert space.modalities == ["image", "text"]
    assert list(space.file.lr_schedule.choices) == ["none", "cosine"]


def test_empty_entries_take_the_defaults(tmp_path):
    path = write_space(tmp_path, {
        ("modalities", "text"): None,
        ("encoders", "text", "choices"): {"embedding_bag": None},
        ("lr_schedule",): DELETE, ("head",): DELETE, ("train",): DELETE, ("search",): DELETE,
    })
    space = load_space(space=path)
    assert space.prep["text"].max_length is None  # chosen from the data when the search starts
    assert space.file.encoders["text"].choices == {"embedding_bag": {}}
    flat = sample_file(path, 1)[0]
    tc = TrialConfig.from_flat(flat, space.modalities)
    assert (tc.lr_schedule.name, tc.batch_size, tc.head_hidden, tc.epochs) == ("none", 32, 128, 6)


KNOWN_DISTS = "float, uniform, loguniform, quniform, int, randint, categorical, choice"

# (id, edits, the message after "<path>: ")
INVALID: list[tuple[str, dict[tuple[str, ...], Any], str]] = [
    ("unknown-top-level-key", {("colour",): "red"}, "colour: unknown key (got 'red')"),
    ("missing-section", {("encoders",): DELETE}, "encoders: missing key"),
    ("task-not-a-string", {("task",): 3}, "task: Input should be a valid string (got 3)"),
    ("fusion-param-typo", {("fusion", "choices", "attention", "head"): 2},
     "fusion.choices.attention.head: unknown parameter of fusion 'attention'; known: dim, heads, dropout, ffn"),
    ("encoder-param-typo", {("encoders", "image", "choices", "small_cnn", "widht"): 16},
     "encoders.image.choices.small_cnn.widht: unknown parameter of encoder 'small_cnn'; known: width, depth"),
    ("unknown-shared-key", {("optimizer", "momentum"): 0.9},
     "optimizer.momentum: unknown key; known: choices, lr, weight_decay"),
    ("unknown-train-key", {("train", "bs"): 4}, "train.bs: unknown key (got 4)"),
    ("unknown-search-key", {("search", "trials"): 4}, "search.trials: unknown key; did you mean 'num_trials'? (got 4)"),
    ("unknown-prep-key", {("modalities", "image", "sz"): 4}, "modalities.image.sz: unknown key (got 4)"),
    ("unknown-encoder", {("encoders", "image", "choices", "resnet81"): {}},
     "encoders.image.choices.resnet81: unknown image encoder 'resnet81'; "
     "known: clip, efficientnet_b0, mobilenet_v3_small, pixels, resnet18, small_cnn, timm"),
    ("unknown-fusion", {("fusion", "choices", "attn"): {}},
     "fusion.choices.attn: unknown fusion 'attn'; "
     "known: attention, early, film, gated, late, low_rank_tensor, mid, tensor"),
    ("unknown-loss", {("loss", "choices", "xent"): {}},
     "loss.choices.xent: unknown loss 'xent'; "
     "known: bce, cross_entropy, focal, huber, label_smoothing, mse, weighted_cross_entropy"),
    ("unknown-optimizer", {("optimizer", "choices", "adagrad"): {}},
     "optimizer.choices.adagrad: unknown optimizer 'adagrad'; known: adam, adamw, rmsprop, sgd"),
    ("unknown-lr-schedule", {("lr_schedule", "choices"): ["none", "linear"]},
     "lr_schedule.choices.linear: unknown lr_schedule 'linear'; known: cosine, none, onecycle, step"),
    ("empty-choices", {("fusion", "choices"): {}},
     "fusion.choices: must be a non-empty mapping of name -> parameters (or a list of names), but got {}"),
    ("empty-choice-list", {("loss", "choices"): []},
     "loss.choices: must be a non-empty mapping of name -> parameters (or a list of names), but got []"),
    ("missing-choices", {("encoders", "text"): {"embedding_bag": {}}},
     "encoders.text.choices: missing key; list the names the search may pick"),
    ("section-not-a-mapping", {("fusion",): ["mid", "late"]},
     "fusion: must be a mapping with a 'choices' key, but got ['mid', 'late']"),
    ("choice-params-not-a-mapping", {("fusion", "choices", "mid"): 64},
     "fusion.choices.mid: must be a mapping of parameter -> value or distribution, but got 64"),
    ("categorical-empty", {("fusion", "choices", "attention", "heads"): {"type": "categorical", "choices": []}},
     "fusion.choices.attention.heads: categorical needs a non-empty 'choices' list, but got choices=[]"),
    ("categorical-duplicates", {("fusion", "choices", "attention", "heads"): {"type": "choice", "choices": [2, 2]}},
     "fusion.choices.attention.heads: choices must be distinct, but got [2, 2]"),
    ("categorical-with-bounds", {("head", "hidden"): {"type": "categorical", "low": 1, "high": 4}},
     "head.hidden: categorical takes 'choices', not low/high/step, but got (low=1, high=4, step=None)"),
    ("low-above-high", {("encoders", "image", "choices", "small_cnn", "width"): {"type": "int", "low": 48, "high": 16}},
     "encoders.image.choices.small_cnn.width: low <= high must hold, but got (low=48, high=16)"),
    ("log-low-zero", {("optimizer", "lr"): {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
     "optimizer.lr: log: true needs low > 0, but got low=0.0"),
    ("loguniform-low-negative", {("optimizer", "weight_decay"): {"type": "loguniform", "low": -1.0, "high": 0.1}},
     "optimizer.weight_decay: log: true needs low > 0, but got low=-1.0"),
    ("log-and-step", {("head", "dropout"): {"type": "float", "low": 0.1, "high": 0.5, "log": True, "step": 0.1}},
     "head.dropout: 'step' and 'log: true' cannot be combined, but got step=0.1"),
    ("quniform-without-step", {("head", "dropout"): {"type": "quniform", "low": 0.0, "high": 0.5}},
     "head.dropout: quniform needs 'step' (the quantum), but got none"),
    ("missing-high", {("head", "hidden"): {"type": "int", "low": 32}},
     "head.hidden: int needs both 'low' and 'high', but got (low=32, high=None)"),
    ("distribution-without-type", {("head", "hidden"): {"low": 32, "high": 64}},
     "head.hidden: a mapping here is a distribution and needs 'type' (float, int or categorical), "
     "but got {low: 32, high: 64}"),
    ("unknown-distribution-type", {("fusion", "choices", "attention", "heads"): {"type": "gaussian", "low": 1, "high": 2}},
     f"fusion.choices.attention.heads: unknown distribution type 'gaussian'; known: {KNOWN_DISTS}"),
    ("bad-bound-type", {("head", "dropout"): {"type": "float", "low": "none", "high": 0.5}},
     "head.dropout: low must be a number, but got 'none'"),
    ("lr-zero", {("optimizer", "lr"): 0}, "optimizer.lr: the learning rate must be > 0, but got 0"),
    ("lr-negative", {("optimizer", "lr"): -0.1}, "optimizer.lr: the learning rate must be > 0, but got -0.1"),
    ("lr-range-from-zero", {("optimizer", "lr"): {"type": "float", "low": 0.0, "high": 0.1}},
     "optimizer.lr: the learning rate must be > 0, but got 0.0"),
    ("lr-not-a-number", {("optimizer", "lr"): "fast"}, "optimizer.lr: expected float, but got 'fast'"),
    ("lr-missing", {("optimizer", "lr"): DELETE}, "optimizer.lr: missing key; give a learning rate or a range"),
    ("weight-decay-negative", {("optimizer", "weight_decay"): -0.01},
     "optimizer.weight_decay: must be >= 0, but got -0.01"),
    ("aux-weight-negative", {("loss", "aux_weight"): -1.0}, "loss.aux_weight: must be >= 0, but got -1.0"),
    ("warmup-negative", {("lr_schedule", "warmup_epochs"): -1}, "lr_schedule.warmup_epochs: must be >= 0, but got -1"),
    ("warmup-fractional", {("lr_schedule", "warmup_epochs"): 1.5},
     "lr_schedule.warmup_epochs: expected int, but got 1.5"),
    ("int-with-fractional-bounds", {("fusion", "choices", "attention", "heads"): {"type": "int", "low": 1.5, "high": 4}},
     "fusion.choices.attention.heads: int needs whole numbers, but got low=1.5"),
    ("float-on-int-parameter", {("encoders", "image", "choices", "small_cnn", "width"): {"type": "float", "low": 16, "high": 32}},
     "encoders.image.choices.small_cnn.width: an integer parameter needs type int or categorical, but got type float"),
    ("float-on-int-head", {("head", "hidden"): {"type": "float", "low": 16, "high": 32}},
     "head.hidden: an integer parameter needs type int or categorical, but got type float"),
    ("wrong-constant-type", {("encoders", "image", "choices", "small_cnn", "width"): "wide"},
     "encoders.image.choices.small_cnn.width: expected int, but got 'wide'"),
    ("wrong-choice-type", {("fusion", "choices", "attention", "heads"): {"type": "categorical", "choices": [2, "four"]}},
     "fusion.choices.attention.heads: expected int, but got 'four'"),
    ("bool-parameter-as-string", {("optimizer", "choices", "sgd", "nesterov"): "yes"},
     "optimizer.choices.sgd.nesterov: expected bool, but got 'yes'"),
    ("negative-int-parameter", {("encoders", "text", "choices", "embedding_bag", "dim"): -8},
     "encoders.text.choices.embedding_bag.dim: must be >= 1, but got -8"),
    ("list-as-constant", {("encoders", "image", "choices", "small_cnn", "width"): [16, 32]},
     "encoders.image.choices.small_cnn.width: a list is not a value; to search over its items write "
     "{type: categorical, choices: [16, 32]}, but got [16, 32]"),
    ("film-target-not-a-modality", {("fusion", "choices", "film", "target"): "audio"},
     "fusion.choices.film.target: 'audio' is not one of: image, text"),
    ("unknown-fusion-weights", {("fusion", "weights"): "softmax"},
     "fusion.weights: unknown fusion weights 'softmax'; known: fixed, learned, gated"),
    ("unknown-fusion-weights-choice", {("fusion", "weights"): {"type": "categorical", "choices": ["fixed", "attention"]}},
     "fusion.weights: unknown fusion weights 'attention'; known: fixed, learned, gated"),
    ("unknown-modality", {("modalities", "smell"): {}}, "modalities.smell: unknown modality; known: audio, image, sensor, tabular, text, video"),
    ("no-modalities", {("modalities",): {}}, "modalities: at least one modality is needed"),
    ("modalities-as-list", {("modalities",): ["image", "text"]},
     "modalities: Input should be a valid dictionary (got ['image', 'text'])"),
    ("modality-without-encoders", {("encoders", "text"): DELETE}, "encoders: no encoder choices for modality 'text'"),
    ("encoders-for-absent-modality", {("encoders", "audio"): {"choices": ["mel_cnn"]}},
     "encoders.audio: not one of the file's modalities (image, text)"),
    ("prep-out-of-range", {("modalities", "image", "size"): 4},
     "modalities.image.size: Input should be greater than or equal to 8 (got 4)"),
    ("prep-not-a-mapping", {("modalities", "text"): 16},
     "modalities.text: Input should be a valid dictionary (got 16)"),
    ("fractions-too-large", {("data", ): {"val_fraction": 0.5, "test_fraction": 0.45}},
     "data: val_fraction + test_fraction must be < 0.9, but got 0.5 + 0.45"),
    ("fraction-out-of-range", {("data",): {"val_fraction": 1.5}},
     "data.val_fraction: Input should be less than 1 (got 1.5)"),
    ("bad-rows-policy", {("data",): {"on_bad_rows": "ignore"}},
     "data.on_bad_rows: Input should be 'error' or 'skip' (got 'ignore')"),
    ("allow-missing-unknown", {("data",): {"allow_missing": ["audio"]}},
     "data.allow_missing: 'audio' is not one of the file's modalities (image, text)"),
    ("column-role-unknown", {("data",): {"columns": {"caption": "text_col"}}},
     "data.columns.caption: unknown role; known for this file: image, text, label, split, group"),
    ("loss-does-not-fit-target", {("data",): {"target": "regression"}},
     "loss.choices.cross_entropy: does not fit data.target 'regression'; use one of: huber, mse"),
    ("head-hidden-string", {("head", "hidden"): "wide"}, "head.hidden: expected int, but got 'wide'"),
    ("head-dropout-one", {("head", "dropout"): 1.0}, "head.dropout: must be >= 0 and < 1, but got 1.0"),
    ("batch-size-range-from-zero", {("train", "batch_size"): {"type": "int", "low": 0, "high": 64}},
     "train.batch_size: must be a whole number >= 1 or auto (from the number of training rows), but got 0"),
    ("batch-size-bounds-reversed", {("train", "batch_size"): {"type": "int", "low": 64, "high": 8}},
     "train.batch_size: low <= high must hold, but got (low=64, high=8)"),
    ("epochs-zero", {("train", "epochs"): 0},
     "train.epochs: must be >= 1 (leave it out to use search.max_epochs), but got 0"),
    ("modality-dropout-too-high", {("train", "modality_dropout"): 1.0},
     "train.modality_dropout: must be >= 0 and < 1, but got 1.0"),
    ("grad-clip-negative", {("train", "grad_clip"): -1.0},
     "train.grad_clip: must be >= 0 (0 turns clipping off), but got -1.0"),
    ("amp-not-bool", {("train", "amp"): "auto"}, "train.amp: expected bool, but got 'auto'"),
    ("num-trials-zero", {("search", "num_trials"): 0},
     "search.num_trials: Input should be greater than or equal to 1 (got 0)"),
    ("unknown-sampler", {("search", "sampler"): "grid"},
     "search.sampler: Input should be 'tpe', 'random', 'cmaes', 'gp' or 'nsga2' (got 'grid')"),
    ("unknown-metric", {("search", "metric"): "val_acc"},
     "search.metric: unknown metric 'val_acc' for any target; known: val_loss, val_accuracy, val_f1_macro, "
     "val_recall_macro, val_precision_macro, val_roc_auc, val_pr_auc, val_log_loss, val_f1_micro, val_exact_match, "
     "val_rmse, val_mae, val_r2"),
    ("metric-for-another-target", {("search", "metric"): "val_rmse", ("data",): {"target": "classification"}},
     "search.metric: unknown metric 'val_rmse' for classification targets; known: val_loss, val_accuracy, val_f1_macro, "
     "val_recall_macro, val_precision_macro, val_roc_auc, val_pr_auc, val_log_loss"),
    ("unknown-objective", {("search", "objectives"): ["params"]},
     "search.objectives: unknown objective 'params'; known: num_params, latency_ms"),
]


@pytest.mark.parametrize("edits,message", [(e, m) for _, e, m in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_file_message(tmp_path, edits, message):
    path = write_space(tmp_path, edits)
    with pytest.raises(ConfigError, match=re.escape(message)) as exc:
        load_space(space=path)
    assert str(exc.value) == f"{path}: {message}"
    assert "\n" not in str(exc.value)


def test_invalid_ids_are_unique():
    ids = [i for i, _, _ in INVALID]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "text,message",
    [
        ("task: x\nmodalities: [image\n", "invalid YAML: line 3, column 1: expected ',' or ']', but got '<stream end>' "
                                       "(while parsing a flow sequence that starts at line 2, column 13)"),
        ("task: x\n  modalities: 1\n", "invalid YAML: line 2, column 13: mapping values are not allowed here"),
        ("task: x\n\tmodalities: 1\n", "invalid YAML: line 2, column 1: found character '\\t' that cannot start any token"),
        ("- image\n- text\n", "a space file must be a YAML mapping (task, modalities, ...), but got a list: ['image', 'text']"),
        ("just words\n", "a space file must be a YAML mapping (task, modalities, ...), but got a str: 'just words'"),
        ("# only a comment\n", "the file is empty; a space file is a YAML mapping (task, modalities, ...)"),
    ],
    ids=["unclosed-list", "bad-indent", "tab", "list", "scalar", "empty"],
)
def test_unparsable_file_message(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_space(space=path)
    assert str(exc.value) == f"{path}: {message}"


def test_duplicate_key_is_an_error(tmp_path):
    """safe_load keeps the last of two equal keys; the loader refuses instead."""
    text = yaml.safe_dump(BASE, sort_keys=False).replace(
        "    film:\n", "    mid:\n      dim: 64\n    film:\n"
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index("    mid:", text.splitlines().index("    mid:") + 1) + 1
    with pytest.raises(ConfigError) as exc:
        load_space(space=path)
    assert str(exc.value) == (
        f"{path}: fusion.choices.mid: duplicate key at line {line}, column 5; only the last would count"
    )


def test_not_utf8_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("task: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: ")):
        load_space(space=path)


def test_yaml_11_scientific_notation_is_a_number(tmp_path):
    """PyYAML reads ``1e-3`` as a string; the loader takes it as the number meant."""
    path = tmp_path / "s.yaml"
    text = yaml.safe_dump(BASE, sort_keys=False).replace(
        "lr:\n    type: float\n    low: 0.001\n    high: 0.01", "lr:\n    type: float\n    low: 1e-3\n    high: 1e-2"
    )
    assert "low: 1e-3" in text
    path.write_text(text, encoding="utf-8")
    lr = load_space(space=path).file.optimizer.shared["lr"]
    assert (lr.low, lr.high) == (0.001, 0.01)
    path.write_text(text.replace("weight_decay: 0.0", "weight_decay: 1e-4"), encoding="utf-8")
    assert load_space(space=path).file.optimizer.shared["weight_decay"] == 1e-4


def test_missing_space_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        load_space(space=missing)
    assert str(exc.value) == (
        f"space file {str(missing)!r} does not exist; check the path, or start from a built-in one: "
        "autofusion spaces show TASK > my_space.yaml"
    )


def test_unknown_builtin_task():
    with pytest.raises(ConfigError) as exc:
        load_space("image_txt")
    assert str(exc.value) == f"unknown task 'image_txt'; known: {', '.join(TASKS)}"


def test_neither_task_nor_space():
    with pytest.raises(ConfigError) as exc:
        load_space()
    assert str(exc.value) == "give --task or --space"


def test_task_flag_must_match_the_file(tmp_path):
    path = write_space(tmp_path, {})
    with pytest.raises(ConfigError) as exc:
        load_space("image_audio", space=path)
    assert str(exc.value) == f"{path}: task 'image_text' in the file does not match --task 'image_audio'"


def test_every_problem_is_listed(tmp_path):
    path = write_space(tmp_path, {("colour",): 1, ("shape",): 2})
    with pytest.raises(ConfigError) as exc:
        load_space(space=path)
    assert str(exc.value) == f"{path}: colour: unknown key (got 1); shape: unknown key (got 2)"  # every one listed


def test_errors_survive_pickling(tmp_path):
    """They cross Ray process boundaries."""
    with pytest.raises(ConfigError) as exc:
        load_space(space=write_space(tmp_path, {("optimizer", "lr"): 0}))
    again = pickle.loads(pickle.dumps(exc.value))
    assert type(again) is ConfigError and str(again) == str(exc.value)
    kp = pickle.loads(pickle.dumps(KeyPathError(("choices", "mid"), "bad")))
    assert (kp.path, kp.reason, str(kp)) == (("choices", "mid"), "bad", "choices.mid: bad")

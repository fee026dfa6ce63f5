"""From a validated space to Optuna's define-by-run function, and from a sampled flat
configuration back to a typed :class:`TrialConfig`.

Parameter names are flat and dotted, the same in Optuna, Ray Tune and MLflow:
``encoder.image`` (the choice), ``encoder.image.small_cnn.width`` (its parameter),
``fusion.type``, ``fusion.attention.heads``, ``fusion.weights``, ``optimizer.type``,
``optimizer.lr``, ``loss.type``, ``head.hidden``, ``train.batch_size``. A parameter that
belongs to one choice carries the choice's name, so it exists only in trials that pick that
choice and Optuna's TPE sees the true conditional structure. Dots are not Ray's nesting
delimiter ("/"), so Ray passes these names through untouched.
"""

from __future__ import annotations

from typing import Any, Callable

from autofusion.spaces.load import Space
from autofusion.spaces.schema import (
    PRETRAINED_KEYS,
    STRATEGY_KEYS,
    TRAIN_KEYS,
    ChoiceSection,
    Distribution,
)
from autofusion.trial import PAIR, Choice, TrialConfig, prefix

__all__ = ["CHOICE_SECTIONS", "Choice", "DefineByRun", "TrialConfig", "define_by_run", "suggest"]

# Section name in the file -> prefix of its parameters; the choice itself is "<prefix>.type".
CHOICE_SECTIONS = ("fusion", "loss", "optimizer", "lr_schedule")


def suggest(trial: Any, name: str, value: Any, consts: dict[str, Any]) -> Any:
    """Samples ``name`` from ``trial`` when ``value`` is a distribution, else records the constant."""
    if not isinstance(value, Distribution):
        consts[name] = value
        return value
    if value.type == "categorical":
        return trial.suggest_categorical(name, list(value.choices or []))
    if value.type == "int":
        step = int(value.step) if value.step is not None else 1
        return trial.suggest_int(name, int(value.low), int(value.high), step=step, log=value.log)
    return trial.suggest_float(name, float(value.low), float(value.high), step=value.step, log=value.log)


def _choice(trial: Any, key: str, section: ChoiceSection, consts: dict[str, Any]) -> None:
    names = list(section.choices)
    pick = trial.suggest_categorical(key, names) if len(names) > 1 else names[0]
    if len(names) == 1:
        consts[key] = pick
    for part in pick.split(PAIR):  # a pair (``tfidf+hf_text``): each half's parameters, named as when alone
        for pname, pval in section.choices[part].items():
            suggest(trial, f"{prefix(key)}.{part}.{pname}", pval, consts)
    for pname, pval in section.shared.items():
        suggest(trial, f"{prefix(key)}.{pname}", pval, consts)


class DefineByRun:
    """Optuna define-by-run function over a space; returns the constants it fixed.

    It only samples; it never computes (Ray warns when it takes long). A class rather
    than a closure so that Ray can pickle the searcher with the experiment state.
    """

    def __init__(self, space: Space, max_epochs: int) -> None:
        self.space = space
        self.max_epochs = max_epochs

    def __call__(self, trial: Any) -> dict[str, Any]:
        f = self.space.file
        consts: dict[str, Any] = {}
        for modality in self.space.modalities:
            _choice(trial, f"encoder.{modality}", f.encoders[modality], consts)
        for section in CHOICE_SECTIONS:
            sec = getattr(f, section)
            if sec is not None:
                _choice(trial, f"{section}.type", sec, consts)
        suggest(trial, "head.hidden", f.head.hidden, consts)
        suggest(trial, "head.dropout", f.head.dropout, consts)
        for key in TRAIN_KEYS:
            value = getattr(f.train, key)
            if key == "epochs" and value is None:
                value = self.max_epochs
            if key in STRATEGY_KEYS and value is None:  # not set: off, and not a parameter
                continue
            if key in PRETRAINED_KEYS:
                continue
            suggest(trial, f"train.{key}", value, consts)
        _pretrained(trial, f.train, consts)
        return consts


def _pretrained(trial: Any, train: Any, consts: dict[str, Any]) -> None:
    """``train.strategy`` (only when the file sets it) and the parameters of the strategy
    picked: ``frozen_epochs`` and ``unfreeze_blocks`` for staged, ``encoder_lr_factor`` for
    staged and finetune; so TPE sees which ones matter when."""
    if train.strategy is None:
        return
    picked = suggest(trial, "train.strategy", train.strategy, consts)
    wanted = {"staged": ("frozen_epochs", "unfreeze_blocks", "encoder_lr_factor"),
              "finetune": ("encoder_lr_factor",)}.get(picked, ())
    for key in wanted:
        value = getattr(train, key)
        if value is not None:
            suggest(trial, f"train.{key}", value, consts)


def define_by_run(space: Space, max_epochs: int) -> Callable[[Any], dict[str, Any]]:
    """The define-by-run function of ``space`` (see :class:`DefineByRun`)."""
    return DefineByRun(space, max_epochs)

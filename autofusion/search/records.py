"""What a search takes, keeps and returns: plain records that any module may import.

A leaf: it imports nothing of autofusion, nor torch, Ray, MLflow or Optuna, so the CLI,
the tracking and the resume code can share these types without importing the driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2")
SCHEDULERS = ("asha", "hyperband", "median", "fifo")
TARGETS = ("classification", "regression", "multilabel")  # --target: what the label is


@dataclass(frozen=True)
class SearchOptions:
    """What the user asked for; None means "the space file's setting"."""

    task: str | None = None
    space: str | None = None
    data: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    on_bad_rows: str | None = None
    num_trials: int | None = None
    max_epochs: int | None = None
    concurrency: int | None = None
    seed: int | None = None
    sampler: str | None = None
    scheduler: str | None = None
    target: str | None = None  # --target: classification, regression or multilabel (None: from the labels)
    trees: bool | None = None  # --trees / --no-trees (None: the space's search.trees)
    bagging: str | None = None  # --bagging auto|0|K (None: the space's search.bagging)
    metric: str | None = None
    mode: str | None = None
    objectives: tuple[str, ...] = ()
    time_budget: float | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    memory_per_trial: float | None = None  # GiB each trial reserves (Ray's "memory" resource)
    address: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    resume: str | None = None
    warm_start: str | None = None
    home: str | None = None
    demo_samples: int | None = None
    enqueue: tuple[dict[str, Any], ...] = ()  # configurations to run first (benchmarks, reproductions)
    quiet: bool = False
    verbose: bool = False


@dataclass(frozen=True)
class Settings:
    """Resolved search settings: flags over the space file's ``search`` section.

    ``concurrency`` is 0 until the cluster's CPUs are known (see
    :func:`autofusion.search.settings.fit_to_cluster`) unless a flag or the file set it.
    """

    num_trials: int
    max_epochs: int
    concurrency: int
    seed: int
    sampler: str
    scheduler: str
    metric: str
    mode: str
    objectives: tuple[str, ...]
    time_budget: float | None
    cpus_per_trial: float
    gpus_per_trial: float
    grace_period: int
    memory_per_trial: float | None = None  # GiB, or None: no reservation
    trees: bool = True  # the gradient-boosted trees member after the trials (search/trees.py)
    bagging: int = -1  # folds of k-fold bagging of the search's model: 0 none, -1 by data size (search/bagging.py)

    def to_params(self) -> dict[str, Any]:
        """The settings as the search run's MLflow params (``search.<name>``)."""
        d = {f"search.{k}": v for k, v in self.__dict__.items()}
        d["search.objectives"] = ",".join(self.objectives) or "-"
        return d


@dataclass
class TrialRecord:
    """What the driver knows about one trial."""

    trial_id: str
    number: int
    config: dict[str, Any]
    status: str = "pending"
    history: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    planned_epochs: int = 0
    num_params: int | None = None
    latency_ms: float | None = None
    seconds: float = 0.0
    run_id: str | None = None
    checkpoint: str | None = None
    input_weights: dict[str, float] = field(default_factory=dict)  # a learned or gated weighting's, per input
    # Why it ended: "converged" (its own early stopping), "epochs" (ran every planned epoch),
    # "stopped" (the scheduler or the time budget stopped it: status "pruned"); None while running.
    stop_reason: str | None = None
    kind: str = "fusion"  # "fusion": a sampled fusion model; "lightgbm", "linear": the row members (search/trees.py)
    oof_value: float | None = None  # the search metric out of fold when bagging refitted it (read back from its run)

    def best_metrics(self) -> dict[str, float]:
        """The metrics of the trial's best epoch (empty before one is known)."""
        if self.best_epoch is None:
            return {}
        return self.history[self.best_epoch - 1]


@dataclass
class EnsembleResult:
    """The greedy ensemble a search built over its trials' validation outputs, kept or not.

    ``trials``, ``run_ids`` and ``weights`` list the members, most weight first;
    ``val_value`` and ``best_val_value`` are the search metric of the ensemble and of the best
    trial, computed from their saved validation outputs alike. ``test_metrics`` and
    ``model_uri`` are set only when the ensemble is kept (it is then the search's model).
    """

    trials: list[int]
    run_ids: list[str | None]
    weights: list[float]
    val_value: float
    best_val_value: float
    kept: bool
    candidates: int
    rounds: int
    val_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None

    def members_text(self) -> str:
        """``trial 3 x0.60, trial 5 x0.40``."""
        return ", ".join(f"trial {n} x{w:.2f}" for n, w in zip(self.trials, self.weights))


@dataclass
class BaggedResult:
    """The search's model refitted by k-fold bagging on the training and validation rows
    (``search/bagging.py``): the configurations bagged (trials, most weight first), their
    weights from greedy selection on out-of-fold outputs, the out-of-fold metrics over every
    pooled row, the one test evaluation and the logged model."""

    folds: int
    rows: int  # training and validation rows pooled
    trials: list[int]
    run_ids: list[str | None]
    weights: list[float]
    oof_metrics: dict[str, float] = field(default_factory=dict)  # val_* names, over the pooled rows
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    seconds: float = 0.0
    dropped: list[str] = field(default_factory=list)  # configurations left out (folds failed, or the budget), with why
    oof_values: dict[int, float] = field(default_factory=dict)  # each configuration bagged -> its own out-of-fold metric

    def members_text(self) -> str:
        """``trial 3 x0.60, trial 5 x0.40``."""
        return ", ".join(f"trial {n} x{w:.2f}" for n, w in zip(self.trials, self.weights))

    def each_text(self) -> str:
        """Every configuration bagged with its own out-of-fold value, best first, and its weight
        (``x0`` where selection left it out): ``trial 14 0.8560 x0.38, trial 16 0.8180 x0``."""
        w = dict(zip(self.trials, self.weights))
        return ", ".join(f"trial {n} {v:.4f} x{w.get(n, 0.0):.2g}" for n, v in self.oof_values.items())


def member_name(t: "TrialRecord") -> str:
    """What a trial is, in a few words: ``mid fusion``, ``lightgbm``, ``linear on text``."""
    if t.kind == "fusion":
        return f"{t.config.get('fusion.type', '?')} fusion"
    inputs = t.config.get(f"{t.kind}.inputs", "all")
    return t.kind if inputs == "all" else f"{t.kind} on {inputs}"


SURE = 0.95  # the best trial must win on this share of bootstrap resamples to be told apart


@dataclass(frozen=True)
class ValidationNoise:
    """What the bootstrap found: the best trial's interval and the trials not told apart from it."""

    rows: int
    resamples: int
    low: float  # the best trial's 95% interval of the metric
    high: float
    compared: int  # other trials with saved validation outputs
    tied: list[int] = field(default_factory=list)  # their numbers, the closest to the best first
    shares: dict[int, float] = field(default_factory=dict)  # trial -> share of resamples the best one wins

    def text(self, metric: str, best_value: float) -> str:
        """One line for the summary and the report."""
        head = (f"on {self.rows} validation rows the best trial's {metric} {best_value:.4f} has a 95% bootstrap "
                f"interval of {self.low:.4f}-{self.high:.4f}")
        if not self.compared:
            return head
        if not self.tied:
            return f"{head}; it beats each of the other {self.compared} trials on at least {SURE:.0%} of resamples"
        if len(self.tied) == self.compared:
            which = f"none of the other {self.compared} trials is told apart from it"
        else:
            shown = ", ".join(str(n) for n in self.tied[:8]) + (", ..." if len(self.tied) > 8 else "")
            which = f"{len(self.tied)} of the other {self.compared} trials (trials {shown}) are not told apart from it"
        return (f"{head}; {which}: it beats them on fewer than {SURE:.0%} of resamples, so its lead over them may be "
                "noise, which more labelled validation rows would settle")


REMOVAL, PERMUTATION = "removal", "permutation"  # the two ways an input is taken away (serving/importance.py)


@dataclass(frozen=True)
class Drop:
    """How much the metric gets worse when an input is taken away (positive: the model needs the
    input), with its paired bootstrap 95% interval over the rows."""

    value: float
    low: float
    high: float

    def text(self) -> str:
        return f"{number_text(self.value)} [{number_text(self.low)}, {number_text(self.high)}]"


def number_text(v: float, spec: str = ".3f") -> str:
    """``v`` formatted, a zero shown without a sign (a drop of exactly nothing, for a metric
    whose sign is flipped, is -0.0)."""
    out = format(v, spec)
    return out if out.lstrip("+-").strip("0.") else out.lstrip("+-")


@dataclass(frozen=True)
class InputImportance:
    """One input's drops: ``removal`` (left out, as the model reads a missing input) and
    ``permutation`` (its values shuffled across the rows)."""

    name: str
    removal: Drop
    permutation: Drop


@dataclass(frozen=True)
class Importance:
    """Per-input importance of one model on one labelled split: the drop in ``metric`` (its
    sign flipped for metrics where lower is better), most important input first."""

    metric: str
    split: str  # "validation", "test", or the manifest explained
    rows: int
    resamples: int
    base: float  # the metric with every input as it is
    inputs: list[InputImportance] = field(default_factory=list)
    seconds: float = 0.0

    def text(self) -> str:
        """One line for the summary: removal | permutation drop and interval per input."""
        parts = "; ".join(f"{i.name} {i.removal.text()} | {i.permutation.text()}" for i in self.inputs)
        return (f"drop in {self.metric} on {self.rows} {self.split} rows when an input is removed | permuted "
                f"[95% bootstrap interval]: {parts}")

    def metrics(self, prefix: str = "importance") -> dict[str, float]:
        """``<prefix>.<input>`` (removal), ``<prefix>_permutation.<input>``, each with ``.low``/``.high``
        (characters an MLflow key may not hold replaced by ``_``)."""
        out: dict[str, float] = {}
        for i in self.inputs:
            name = re.sub(r"[^\w.\- /]", "_", i.name)
            for key, d in ((f"{prefix}.{name}", i.removal), (f"{prefix}_permutation.{name}", i.permutation)):
                out.update({key: d.value, f"{key}.low": d.low, f"{key}.high": d.high})
        return out


@dataclass(frozen=True)
class Latency:
    """A logged model's speed as served (raw rows in, predictions out, on this machine):
    single-row p50 and p95 in milliseconds, and rows per second in batches of ``batch``."""

    p50_ms: float
    p95_ms: float
    rows_per_s: float
    batch: int
    runs: int  # single-row predictions timed

    def tags(self) -> dict[str, str]:
        return {"autofusion.latency_p50_ms": f"{self.p50_ms:.2f}", "autofusion.latency_p95_ms": f"{self.p95_ms:.2f}",
                "autofusion.rows_per_s": f"{self.rows_per_s:.1f}", "autofusion.latency_batch": str(self.batch)}

    def text(self) -> str:
        return (f"one row p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms; {self.rows_per_s:.0f} rows/s in batches "
                f"of {self.batch}")


@dataclass
class SearchResult:
    """What a finished search found and where it logged it."""

    parent_run_id: str
    experiment_id: str
    experiment: str
    tracking_uri: str
    settings: Settings
    trials: list[TrialRecord]
    best: TrialRecord | None
    test_metrics: dict[str, float]
    model_uri: str | None
    wall_seconds: float
    data_summary: dict[str, Any]
    pareto: list[TrialRecord] = field(default_factory=list)
    tracking_errors: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    tune_seconds: float = 0.0  # wall time of the trials phase (Tuner.fit)
    first_trial_seconds: float | None = None  # from the command's start to the first trial's start
    default_trial: TrialRecord | None = None  # the trial that ran the hand-built default configuration
    ensemble: EnsembleResult | None = None  # None: fewer than two trials kept validation outputs
    report_path: str | None = None  # the search's HTML report, beside the store
    noise: ValidationNoise | None = None  # how surely validation ranks the best trial (search/noise.py)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase (autofusion/phases.py)
    bagged: BaggedResult | None = None  # k-fold bagging of the chosen configurations (search/bagging.py)
    importance: Importance | None = None  # the search's model on validation (serving/importance.py)
    test_importance: Importance | None = None  # the same on test, beside its test metrics
    latency: dict[str, Latency] = field(default_factory=dict)  # logged model URI -> its served speed

    @property
    def final_model_uri(self) -> str | None:
        """The search's model's URI (:func:`final_kind`)."""
        return final_uri(self.bagged, self.ensemble, self.model_uri)


def final_kind(bagged: BaggedResult | None, ensemble: EnsembleResult | None) -> str:
    """Which model is the search's: ``bagged`` when the search bagged and logged it, else
    ``ensemble`` when the ensemble is kept, else ``best`` (the best trial's)."""
    if bagged is not None and bagged.model_uri:
        return "bagged"
    return "ensemble" if ensemble is not None and ensemble.kept else "best"


def final_uri(bagged: BaggedResult | None, ensemble: EnsembleResult | None, best_uri: str | None) -> str | None:
    """The URI of the search's model (:func:`final_kind`); ``best_uri``: the best trial's."""
    kind = final_kind(bagged, ensemble)
    return bagged.model_uri if kind == "bagged" else ensemble.model_uri if kind == "ensemble" else best_uri


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the search; it can be resumed."""

    def __init__(self, message: str, search_id: str) -> None:
        super().__init__(message)
        self.search_id = search_id

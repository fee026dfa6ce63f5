"""What a search takes, keeps and returns: plain records that any module may import.

A leaf: it imports nothing of autofusion, nor torch, Ray, MLflow or Optuna, so the CLI,
the tracking and the resume code can share these types without importing the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2")
SCHEDULERS = ("asha", "hyperband", "median", "fifo")


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
    fusion_weights: dict[str, float] = field(default_factory=dict)
    # Why it ended: "converged" (its own early stopping), "epochs" (ran every planned epoch),
    # "stopped" (the scheduler or the time budget stopped it: status "pruned"); None while running.
    stop_reason: str | None = None

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

    @property
    def final_model_uri(self) -> str | None:
        """The search's model: the ensemble's when it is kept, else the best trial's."""
        return self.ensemble.model_uri if self.ensemble is not None and self.ensemble.kept else self.model_uri


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the search; it can be resumed."""

    def __init__(self, message: str, search_id: str) -> None:
        super().__init__(message)
        self.search_id = search_id

"""The state one search's steps share, built once by the driver, so that no step needs a
long argument list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from autofusion.data.prepare import PreparedData
from autofusion.home import state_dir
from autofusion.metrics import EXTRA_OBJECTIVES
from autofusion.phases import Phases
from autofusion.search import resume
from autofusion.search.records import SearchOptions, Settings, TrialRecord
from autofusion.spaces.load import Space


@dataclass
class SearchContext:
    """One search: what was asked, what it runs on, where it is tracked, what is done.

    ``parent`` (the search run's id) is set once that run exists; ``records`` holds the
    trials, those a resumed search had finished included.
    """

    opts: SearchOptions
    space: Space
    data: PreparedData
    settings: Settings
    uri: str
    experiment: str
    experiment_id: str
    home: Path
    t0: float
    parent: str = ""
    records: dict[str, TrialRecord] = field(default_factory=dict)
    source_study: Any = None  # the Optuna study of --warm-start
    console: Any = None
    phases: Phases = field(default_factory=Phases)  # where the time goes (autofusion/phases.py)
    stop_ray: Callable[[], None] = lambda: None  # Ray stops in the background: nothing after may use it

    @property
    def folder(self) -> Path:
        """The search's state folder (options, Optuna journal, Tune's checkpoints)."""
        return state_dir(self.home, self.parent)

    @cached_property
    def storage(self) -> Any:
        """The Optuna journal storage of the search's study (its name is ``parent``)."""
        return resume.journal_storage(self.folder)

    @property
    def metrics(self) -> list[str]:
        """What the sampler optimises: the validation metric, then the extra objectives."""
        return [self.settings.metric, *self.settings.objectives]

    @property
    def modes(self) -> list[str]:
        """``min`` or ``max`` for each of :attr:`metrics`."""
        return [self.settings.mode, *(EXTRA_OBJECTIVES[o] for o in self.settings.objectives)]

    def ended(self) -> int:
        """How many trials have ended (finished, pruned or failed)."""
        return sum(r.status in ("finished", "pruned", "failed") for r in self.records.values())

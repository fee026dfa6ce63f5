"""Search spaces: YAML files validated by a pydantic schema, compiled to Optuna's
define-by-run form (see ``sample.py``)."""

from autofusion.spaces.load import Space, builtin_tasks, load_space, resolve_space_path
from autofusion.spaces.sample import TrialConfig, define_by_run

__all__ = ["Space", "TrialConfig", "builtin_tasks", "define_by_run", "load_space", "resolve_space_path"]

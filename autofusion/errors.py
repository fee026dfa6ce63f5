"""Error types. Every user-facing failure is an AutofusionError: the CLI prints its message
on one line and exits 2. They are plain ``Exception`` subclasses with a single message
argument so they survive pickling across Ray process boundaries."""

from __future__ import annotations


class AutofusionError(Exception):
    """A problem the user can fix; the message says what and where."""

    exit_code = 2


class ConfigError(AutofusionError, ValueError):
    """A search-space file or a flag value is invalid."""


class DataError(AutofusionError, ValueError):
    """A manifest or a data file is invalid."""


class TrackingError(AutofusionError):
    """The MLflow store cannot be reached or written."""


class ClusterError(AutofusionError):
    """The Ray cluster cannot be reached or used."""


class RegistryError(AutofusionError):
    """A Model Registry operation cannot be done."""

"""Models: encoders and fusion operators, each registered by name; importing this package
fills the registries."""

from autofusion.models import encoders, fusion  # noqa: F401  (fills the registries)
from autofusion.models.base import ENCODERS, FUSIONS, Encoder, Fusion

__all__ = ["ENCODERS", "FUSIONS", "Encoder", "Fusion"]

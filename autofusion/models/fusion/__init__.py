"""Fusion operators, one module per operator family; importing this package fills FUSIONS."""

from autofusion.models.fusion import (  # noqa: F401
    attention,
    early,
    film,
    gated,
    late,
    mid,
    tensor,
)

"""Encoders, one module per modality; importing this package fills the registries."""

from autofusion.models.encoders import audio, image, text, video  # noqa: F401

"""Encoders, one module per modality; importing this package fills the registries."""

from autofusion.models.encoders import (  # noqa: F401  # noqa: F401  # noqa: F401  (pretrained: transformers, timm)
    audio,
    classical,
    hf,
    image,
    sensor,
    tabular,
    text,
    timm_image,
    video,
)

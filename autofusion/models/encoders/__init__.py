"""Encoders, one module per modality or family; importing this package fills the registries.
The pretrained families (``hf``, ``timm_image``) import transformers and timm only when a model
is built."""

from autofusion.models.encoders import (  # noqa: F401
    audio,
    classical,
    hf,
    image,
    pair,
    sensor,
    tabular,
    text,
    timm_image,
    video,
)

"""One module per modality (image, text, audio, video, ...); importing this package fills
the ``MODALITIES`` registry. See ``base.Modality`` for what a modality describes."""

from autofusion.modalities import audio, image, sensor, tabular, text, video  # noqa: F401  (fill the registry)  # noqa: F401  (fill the registry)
from autofusion.modalities.base import (
    MODALITIES,
    DataChoice,
    DecodeError,
    Modality,
    ModalityInfo,
    PrepSettings,
)

__all__ = ["MODALITIES", "DataChoice", "DecodeError", "Modality", "ModalityInfo", "PrepSettings"]

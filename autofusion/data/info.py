"""What a model needs to know about each modality's preprocessed input."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModalityInfo:
    """Shape facts about one modality's cached tensors.

    Attributes:
        name: image, text, audio or video.
        image_size: side of square images/frames (image, video).
        vocab_size: text vocabulary size including pad (0) and unknown (1).
        max_length: text tokens per sample.
        sample_rate: audio sample rate in Hz.
        num_samples: audio samples per clip.
        frames: frames per video clip.
    """

    name: str
    image_size: int = 0
    vocab_size: int = 0
    max_length: int = 0
    sample_rate: int = 0
    num_samples: int = 0
    frames: int = 0
    extra: dict = field(default_factory=dict)

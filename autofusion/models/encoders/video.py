"""Video encoders over ``[B, F, 3, H, W]`` float clips (normalised frames)."""

from __future__ import annotations

from typing import Annotated

from torch import Tensor, nn

from autofusion.components import NameOf, Size
from autofusion.modalities import ModalityInfo
from autofusion.models import weights
from autofusion.models.base import ENCODERS, Encoder, Tokens, register_encoder


class _FrameEncoder(Encoder):
    """Applies an image encoder to every frame; tokens are the per-frame vectors."""

    def __init__(self, info: ModalityInfo, frame_encoder: str, frame_params: dict) -> None:
        super().__init__()
        self.frame = ENCODERS["image"].get(frame_encoder)(info, **frame_params)

    def frame_vectors(self, x: Tensor) -> Tensor:
        b, f = x.shape[:2]
        return self.frame(x.flatten(0, 1)).view(b, f, -1)


@register_encoder("frame_pool", modality="video")
class FramePool(_FrameEncoder):
    """A per-frame CNN with temporal average pooling."""

    def __init__(self, info: ModalityInfo, *, frame_encoder: Annotated[str, NameOf("image")] = "small_cnn", width: Size = 16) -> None:
        super().__init__(info, frame_encoder, {"width": width} if frame_encoder == "small_cnn" else {})
        self.out_dim = self.frame.out_dim

    def tokens(self, x: Tensor) -> Tokens:
        return self.frame_vectors(x), None


@register_encoder("frame_gru", modality="video")
class FrameGRU(_FrameEncoder):
    """A per-frame CNN followed by a GRU over time."""

    def __init__(
        self, info: ModalityInfo, *, frame_encoder: Annotated[str, NameOf("image")] = "small_cnn", width: Size = 16, hidden: Size = 64
    ) -> None:
        super().__init__(info, frame_encoder, {"width": width} if frame_encoder == "small_cnn" else {})
        self.gru = nn.GRU(self.frame.out_dim, hidden, batch_first=True)
        self.out_dim = hidden

    def tokens(self, x: Tensor) -> Tokens:
        out, _ = self.gru(self.frame_vectors(x))
        return out, None


@register_encoder("r3d_18", modality="video")
class R3D18(Encoder):
    """torchvision's 3-D ResNet-18 (randomly initialised unless ``pretrained``)."""

    @classmethod
    def check_weights(cls, params: dict) -> None:
        """``pretrained: true`` needs the weights in the torch hub cache (checked before any run)."""
        weights.check_torchvision("r3d_18", params)

    def __init__(self, info: ModalityInfo, *, pretrained: bool = False) -> None:
        super().__init__()
        net = weights.torchvision_net("r3d_18", pretrained)  # from the torch hub cache; never downloads
        self.body = nn.Sequential(*list(net.children())[:-2])
        self.out_dim = net.fc.in_features

    def tokens(self, x: Tensor) -> Tokens:
        fmap = self.body(x.transpose(1, 2))  # [B, C, T', h, w]
        return fmap.mean(dim=(3, 4)).transpose(1, 2), None

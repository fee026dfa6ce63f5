"""Image encoders over ``[B, 3, H, W]`` float images (normalised by the data stage)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from autofusion.components import Size
from autofusion.modalities import ModalityInfo
from autofusion.models import weights
from autofusion.models.base import Encoder, Tokens, register_encoder

MAX_GRID = 8  # token-level fusion sees at most 8 x 8 cells per image: attention cost grows with their square


class _FeatureMapEncoder(Encoder):
    """Encoder whose backbone yields a feature map ``[B, C, h, w]``; tokens are its cells,
    average-pooled to at most ``MAX_GRID`` x ``MAX_GRID`` (a 96 px photo through a small CNN
    would otherwise give 144 tokens, and four photos per row 576 for attention to pair up)."""

    backbone: nn.Module

    def tokens(self, x: Tensor) -> Tokens:
        fmap = self.backbone(x)
        if fmap.shape[-2] > MAX_GRID or fmap.shape[-1] > MAX_GRID:
            fmap = nn.functional.adaptive_avg_pool2d(fmap, (min(fmap.shape[-2], MAX_GRID), min(fmap.shape[-1], MAX_GRID)))
        return fmap.flatten(2).transpose(1, 2), None

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x).mean(dim=(2, 3))


@register_encoder("small_cnn", modality="image")
class SmallCNN(_FeatureMapEncoder):
    """A few conv-BN-ReLU blocks; fast on CPU, the demo default."""

    def __init__(self, info: ModalityInfo, *, width: Size = 32, depth: Size = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(depth):
            c_out = width * (2 ** min(i, 2))
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.backbone = nn.Sequential(*layers)
        self.out_dim = c_in


def _torchvision_backbone(
    name: str, pretrained: bool, freeze: bool
) -> tuple[nn.Module, int]:
    net = weights.torchvision_net(name, pretrained)  # from the torch hub cache; never downloads
    if name.startswith("resnet"):
        out_dim = net.fc.in_features
        body = nn.Sequential(*list(net.children())[:-2])
    else:  # mobilenet / efficientnet: .features then pooling
        body = net.features
        out_dim = _last_channels(body)
    if freeze:
        for p in body.parameters():
            p.requires_grad_(False)
    return body, out_dim


def _last_channels(body: nn.Module) -> int:
    with torch.no_grad():
        was = body.training
        body.eval()
        out = body(torch.zeros(1, 3, 32, 32))
        body.train(was)
    return int(out.shape[1])


class _TorchvisionEncoder(_FeatureMapEncoder):
    arch = ""

    @classmethod
    def check_weights(cls, params: dict) -> None:
        """``pretrained: true`` needs the weights in the torch hub cache (checked before any run)."""
        weights.check_torchvision(cls.arch, params)

    def __init__(self, info: ModalityInfo, *, pretrained: bool = False, freeze: bool = False) -> None:
        super().__init__()
        self.backbone, self.out_dim = _torchvision_backbone(self.arch, pretrained, freeze)


@register_encoder("resnet18", modality="image")
class ResNet18(_TorchvisionEncoder):
    """torchvision ResNet-18 without its classifier."""

    arch = "resnet18"


@register_encoder("mobilenet_v3_small", modality="image")
class MobileNetV3Small(_TorchvisionEncoder):
    """torchvision MobileNetV3-Small features."""

    arch = "mobilenet_v3_small"


@register_encoder("efficientnet_b0", modality="image")
class EfficientNetB0(_TorchvisionEncoder):
    """torchvision EfficientNet-B0 features."""

    arch = "efficientnet_b0"

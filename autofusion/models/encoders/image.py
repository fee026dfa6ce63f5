"""Every image encoder, by family; each reads ``[B, 3, H, W]`` float images (normalised by the
data stage) unless it names its own extractor:

* trained with the model, from scratch or from torchvision's ImageNet weights (``pretrained:
  true``, from the torch hub cache): ``small_cnn``, ``resnet18``, ``mobilenet_v3_small``,
  ``efficientnet_b0``;
* classical: ``pixels``, downsampled pixels with colour and edge histograms, standardised on the
  training split;
* pretrained, at the model's own input size and normalisation: ``timm`` (any timm model by
  name), and the vision tower of a CLIP or SigLIP model (``clip``; its text tower is in
  ``text.py``).

What the classical and pretrained families share is in ``_classical.py`` and ``_pretrained.py``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autofusion.components import Ge, Le, Rate, Size
from autofusion.modalities import DecodeError, ModalityInfo
from autofusion.modalities.base import Normalize, eight_bit, heif, open_source, upright
from autofusion.models import weights
from autofusion.models.base import Encoder, Tokens, register_encoder
from autofusion.models.encoders._classical import (
    FeatureMLP,
    Standardised,
    present_or_none,
)
from autofusion.models.encoders._hf import clip_tower, config_of, tower_width
from autofusion.models.encoders._pretrained import (
    PixelInputs,
    PretrainedEncoder,
    decode_cells,
    grid_tokens,
)
from autofusion.models.encoders._timm import create
from autofusion.models.extractors import FeatureExtractor

# --- trained with the model -------------------------------------------------------------------

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


# --- classical --------------------------------------------------------------------------------


class PixelStatsExtractor(Standardised):
    """Per image: its pixels at ``size`` x ``size`` (RGB), hue/saturation/value histograms of
    ``bins`` bins each, and histograms of edge orientation (8 directions, magnitude-weighted)
    over a 2 x 2 grid, from the image decoded once at 64 px."""

    def features(self, cells: list[Any]) -> np.ndarray:
        size, bins = int(self.params["size"]), int(self.params["bins"])
        empty = np.zeros((3, WORK_SIDE, WORK_SIDE), dtype=np.uint8)
        images = decode_cells(present_or_none(cells), lambda c: decode_small(c, WORK_SIDE), empty)
        images = images.astype(np.float32) / 255.0
        n = len(images)
        pixels = F.adaptive_avg_pool2d(torch.from_numpy(images), size).numpy().reshape(n, -1)
        return np.concatenate([pixels, hsv_histograms(images, bins), edge_histograms(images.mean(axis=1))], axis=1)


WORK_SIDE = 64  # images are decoded once at this side; pixel features are averaged down from it


def decode_small(source: Any, side: int) -> np.ndarray:
    """An image decoded straight to ``side`` x ``side`` RGB uint8 ``[3, side, side]``; a JPEG is
    decoded at a reduced scale first (Pillow's draft mode), which is several times faster."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    heif()
    try:
        with PILImage.open(open_source(source)) as im:
            im.draft("RGB", (side * 2, side * 2))
            arr = np.asarray(eight_bit(upright(im)).convert("RGB").resize((side, side), PILImage.Resampling.BILINEAR,
                                                               reducing_gap=2.0))
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a readable image ({type(exc).__name__})") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def hsv_histograms(images: np.ndarray, bins: int) -> np.ndarray:
    """Per image ``[N, 3, H, W]`` (RGB in 0..1): normalised histograms of hue, saturation and value."""
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    v = images.max(axis=1)
    c = v - images.min(axis=1)
    s = np.where(v > 0, c / np.maximum(v, 1e-8), 0.0)
    safe = np.maximum(c, 1e-8)
    h = np.where(v == r, (g - b) / safe % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6.0
    h = np.where(c > 1e-8, h, 0.0)
    out = []
    for channel in (h, s, v):
        idx = np.clip((channel * bins).astype(np.int64), 0, bins - 1).reshape(len(images), -1)
        counts = np.stack([np.bincount(row, minlength=bins) for row in idx]) if len(idx) else np.zeros((0, bins))
        out.append(counts / max(idx.shape[1], 1))
    return np.concatenate(out, axis=1)


def edge_histograms(grey: np.ndarray, grid: int = 2, directions: int = 8) -> np.ndarray:
    """Per grey image ``[N, H, W]``: magnitude-weighted histograms of gradient direction in
    each cell of a ``grid`` x ``grid`` layout (a coarse HOG), normalised per image."""
    n, hgt, wid = grey.shape
    gy, gx = np.gradient(grey, axis=(1, 2))
    mag = np.hypot(gx, gy)
    ang = ((np.arctan2(gy, gx) + np.pi) / (2 * np.pi) * directions).astype(np.int64) % directions
    cells = []
    for i in range(grid):
        for j in range(grid):
            rows_, cols_ = slice(i * hgt // grid, (i + 1) * hgt // grid), slice(j * wid // grid, (j + 1) * wid // grid)
            sl = (slice(None), rows_, cols_)
            a, m = ang[sl].reshape(n, -1), mag[sl].reshape(n, -1)
            cells.append(np.stack([np.bincount(a[k], weights=m[k], minlength=directions) for k in range(n)])
                         if n else np.zeros((0, directions)))
    out = np.concatenate(cells, axis=1)
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-8)


@register_encoder("pixels", modality="image")
class Pixels(FeatureMLP):
    """Downsampled pixels, colour histograms and coarse edge-orientation histograms
    (standardised on the training split) into a small MLP: a strong start on small data sets
    of photos, where a CNN trained from scratch has too few images to learn from.

    Args:
        size: side of the downsampled RGB pixels (3 * size * size features).
        bins: bins of each of the hue, saturation and value histograms.
        dim: width of the hidden layer (the encoder's output).
        dropout: dropout on the features while training.
    """

    extractor: ClassVar[type[FeatureExtractor]] = PixelStatsExtractor
    feature_params: ClassVar[tuple[str, ...]] = ("size", "bins")

    def __init__(self, info: ModalityInfo, *, size: Annotated[int, Ge(4), Le(32)] = 16,
                 bins: Annotated[int, Ge(2), Le(64)] = 16, dim: Size = 128, dropout: Rate = 0.2) -> None:
        super().__init__(info, dim, dropout)


# --- pretrained -------------------------------------------------------------------------------


class TimmInputs(PixelInputs):
    """Pixels as the timm model's data configuration says (``resolve_model_data_config``)."""

    def lookup(self) -> weights.Weights:
        return weights.timm_model(self.params["model"], self.params.get("checkpoint"))

    def setup(self) -> None:
        import timm

        with torch.device("meta"):  # the architecture only: no memory, no weights
            model = create(self.weights.arch)
        cfg = timm.data.resolve_model_data_config(model)
        self.set_pixels(cfg["input_size"][-1], cfg["mean"], cfg["std"], cfg.get("crop_pct", 1.0),
                        cfg.get("interpolation", "bicubic"))
        self.dim = int(model.num_features)


@register_encoder("timm", modality="image")
class Timm(PretrainedEncoder):
    """Any timm image model by name (resnet18.a1_in1k, convnext_nano, vit_small_patch16_224, ...), pretrained, with its own input size and normalisation; `model` is required.

    Args:
        model: a timm model name (its default weights from the Hugging Face cache), or a local
            folder saved with timm's save_for_hf.
        checkpoint: a local state-dict file to load instead of the default weights.
        max_tokens: tokens kept for token-level fusion (a feature map is averaged down to a
            square grid of at most this many cells).
    """

    extractor = TimmInputs
    feature_params = ("model", "checkpoint", "max_tokens")
    token_cap = "pool"

    def __init__(self, info: ModalityInfo, *, model: str, checkpoint: str | None = None, max_tokens: Size = 16) -> None:
        super().__init__(info, max_tokens)

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:
        pre = extra["preprocessing"]
        return nn.ModuleDict({"net": create(extra["arch"], extra["source"] if load else None),
                              "norm": Normalize(pre["mean"], pre["std"])})

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        net = self.backbone["net"]
        fmap = net.forward_features(self.backbone["norm"](x))
        pooled = net.forward_head(fmap, pre_logits=True)
        if fmap.ndim == 4:  # a CNN's feature map: channels first, or last (some timm models)
            fmap = fmap if fmap.shape[1] == self.out_dim else fmap.permute(0, 3, 1, 2)
            if pooled.shape[-1] != self.out_dim:  # a head with its own hidden layer (MobileNetV3): the map's mean
                pooled = fmap.mean(dim=(2, 3))
            return {"pooled": pooled}, grid_tokens(fmap, self.max_tokens), None
        return {"pooled": pooled}, fmap, None  # a transformer's tokens (prefix tokens included)

    def blocks(self) -> list[list[nn.Parameter]]:
        """timm's own grouping of the model (stem, then each stage or block; a final norm joins the last)."""
        from timm.models import group_parameters

        net = self.backbone["net"]
        named = dict(net.named_parameters())
        groups = group_parameters(net, net.group_matcher(coarse=True))
        return [[named[n] for n in names] for _, names in sorted(groups.items())]


class ClipImageInputs(PixelInputs):
    """uint8 pixels at the vision tower's size, normalised (by the model) with its processor's
    mean and std."""

    state_keys = (*PixelInputs.state_keys, "config")

    def lookup(self) -> weights.Weights:
        return weights.hf_model(self.params["model"])

    def setup(self) -> None:
        cfg = config_of(self.weights.path)
        self.config = cfg.to_dict()
        mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # CLIP's
        try:
            from transformers import AutoImageProcessor

            proc = AutoImageProcessor.from_pretrained(self.weights.path)
            mean, std = tuple(proc.image_mean), tuple(proc.image_std)
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # no processor saved: CLIP's statistics
        self.set_pixels(int(cfg.vision_config.image_size), mean, std, crop_pct=1.0)
        self.dim = tower_width(cfg, "vision")

    def build_info(self) -> dict:
        return {"config": self.config}


@register_encoder("clip", modality="image")
class ClipImage(PretrainedEncoder):
    """The vision tower of a CLIP or SigLIP model (pooled: its projected image embedding; tokens: its patch tokens, averaged down to `max_tokens`); `model` is a hub name or a local folder (required).

    Args:
        model: a hub repository in the Hugging Face cache, or a local folder.
        max_tokens: tokens kept for token-level fusion.
    """

    extractor = ClipImageInputs
    feature_params = ("model", "max_tokens")
    token_cap = "pool"

    def __init__(self, info: ModalityInfo, *, model: str, max_tokens: Size = 16) -> None:
        super().__init__(info, max_tokens)

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:
        self.model_type = str(extra["config"].get("model_type", ""))
        return clip_tower(extra, load, "vision")

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        b = self.backbone
        out = b["tower"](pixel_values=b["norm"](x))
        toks = out.last_hidden_state
        if self.model_type == "clip":  # CLIP normalises only its pooled token; its tokens get the same norm here
            toks = b["tower"].post_layernorm(toks)
        return {"pooled": b["proj"](out.pooler_output)}, b["proj"](toks), None

"""``timm``: any timm image model by name (``resnet18.a1_in1k``, ``convnext_nano``,
``vit_small_patch16_224``, ...), pretrained, with its own data configuration (input size,
crop, interpolation, mean and std). Weights come from a local ``checkpoint`` file, a local
folder saved with timm's ``save_for_hf``, or the model's default weights in the Hugging Face
cache (``autofusion weights pull timm:NAME``). See ``pretrained.py`` for what all pretrained
encoders share."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from autofusion.components import Size
from autofusion.errors import ConfigError
from autofusion.modalities import ModalityInfo
from autofusion.modalities.base import Normalize
from autofusion.models import weights
from autofusion.models.base import register_encoder
from autofusion.models.encoders.pretrained import (
    PixelInputs,
    PretrainedEncoder,
    grid_tokens,
)


def create(arch: str, file: str | None = None) -> nn.Module:
    """A timm model without its classifier; its pretrained weights from ``file`` when given.

    Every tensor but the classifier's must match (timm's own loading only warns about keys it
    does not know, and would leave a mismatched file's model at its random start).

    Raises:
        ConfigError: the file's tensors do not fit the architecture.
    """
    import timm
    from timm.models import load_state_dict

    net = timm.create_model(arch, pretrained=False, num_classes=0)
    if file is None:
        return net
    head = net.pretrained_cfg.get("classifier") or ()
    heads = tuple(f"{h}." for h in ([head] if isinstance(head, str) else head))
    state = {k: v for k, v in load_state_dict(file, weights_only=True).items() if not k.startswith(heads)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of other shapes: the first one named
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise ConfigError(f"timm model {arch!r}: {file} does not fit it: {detail}") from None
    if missing or unexpected:
        raise ConfigError(f"timm model {arch!r}: {file} does not fit it: {len(missing)} of its tensors missing "
                          f"({', '.join(missing[:3]) or '-'}), {len(unexpected)} unknown "
                          f"({', '.join(unexpected[:3]) or '-'})")
    return net


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

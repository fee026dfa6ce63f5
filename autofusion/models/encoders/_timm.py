"""Creating timm models for the ``timm`` image encoder (``image.py``) and the weights shelf: the
architecture by name without its classifier, and its weights from a local file, checked tensor by
tensor. timm is imported only when a model is built."""

from __future__ import annotations

from torch import nn

from autofusion.errors import ConfigError


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

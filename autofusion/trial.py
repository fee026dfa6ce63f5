"""A trial's configuration: everything needed to build and train one model, parsed from the
flat, dotted parameters Optuna samples (``encoder.image``, ``fusion.attention.heads``,
``optimizer.lr``, ...). A leaf: the search space, the model builder, training and serving
all read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from autofusion.errors import ConfigError

# Fields of a saved configuration that have another name now (a model logged before still loads).
RENAMED = {"fusion_weights": "fusion_weighting"}
MISSING_MODES = ("zero", "learned")  # train.missing: how a model treats an absent input (models/missing.py)


# How pretrained encoders train (``train.strategy``): on their cached frozen outputs, fusion
# and head only; staged (frozen first, then their top blocks unfrozen); or end to end.
STRATEGIES = ("frozen", "staged", "finetune")

# Two encoders on one input: the encoder choice ``tfidf+hf_text`` feeds the column to both
# (models/encoders/pair.py); each half takes the parameters of its own choice in the space.
PAIR = "+"


def prefix(key: str) -> str:
    """``fusion.type`` -> ``fusion``: the prefix of a choice's own parameters."""
    return key[: -len(".type")] if key.endswith(".type") else key


def _bool(v: Any) -> bool:
    """Booleans that went through MLflow params come back as strings."""
    return v.strip().lower() in ("true", "1", "yes") if isinstance(v, str) else bool(v)


def auto_batch_size(train_rows: int) -> int:
    """The batch size of ``train.batch_size: auto``: about 32 steps per epoch, as a power of two
    from 16 to 256 (16 for 500 training rows, 32 for 1,000, 256 from 6,000 on). Small data sets
    get small batches (more, noisier updates, which generalise better there); large ones get
    batches that keep an epoch's step count, and the per-step overhead on a CPU, bounded."""
    import math

    return int(min(256, max(16, 2 ** round(math.log2(max(train_rows, 1) / 32)))))


@dataclass(frozen=True)
class Choice:
    """A picked registry entry and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> list["Choice"]:
        """The encoders the choice names: itself, or each half of a pair (``tfidf+hf_text``,
        whose ``params`` hold each half's parameters under its name)."""
        if PAIR not in self.name:
            return [self]
        return [Choice(n, dict(self.params.get(n, {}))) for n in self.name.split(PAIR)]


@dataclass(frozen=True)
class TrialConfig:
    """Everything needed to build and train one trial's model; built from a flat config."""

    encoders: dict[str, Choice]
    fusion: Choice
    fusion_weighting: str  # how the fusion operator weighs its inputs: fixed, learned or gated (fusion.weights)
    head_hidden: int
    head_dropout: float
    loss: Choice
    aux_weight: float
    optimizer: Choice
    lr: float
    weight_decay: float
    lr_schedule: Choice
    warmup_epochs: int
    batch_size: int  # 0: from the number of training rows (``train.batch_size: auto``, see auto_batch_size)
    epochs: int
    modality_dropout: float
    grad_clip: float
    amp: bool
    augment: str = "none"
    separate_encoders: tuple[str, ...] = ()  # modalities whose inputs each get their own encoder
    joined_inputs: tuple[str, ...] = ()  # modalities whose columns are read as one joined text (encoder.<m>.layout)
    strategy: str = "frozen"  # pretrained encoders: frozen, staged or finetune (see STRATEGIES)
    frozen_epochs: int = 0  # staged: epochs on frozen outputs before unfreezing (0: half the epochs)
    unfreeze_blocks: int = 0  # staged: the encoder's last N blocks are unfrozen (0: all of it)
    encoder_lr_factor: float = 0.1  # staged, finetune: the encoders' learning rate is lr times this
    # Training strategies (autofusion/train/): off unless the space sets them.
    align_weight: float = 0.0  # InfoNCE between the inputs' projected embeddings (train/alignment.py)
    reconstruct_weight: float = 0.0  # predict each input's embedding from the others (train/reconstruction.py)
    missing: str = "zero"  # an absent input: masked (zero) or a learned embedding (models/missing.py)
    soup_k: int = 0  # average the k best epochs' weights when that beats the best one; < 2 = off (train/soup.py)
    patience: int = 0  # stop after this many epochs without a better validation metric; 0 = off (train/stopping.py)

    @classmethod
    def from_flat(cls, flat: dict[str, Any], modalities: list[str], max_epochs: int | None = None) -> "TrialConfig":
        """Parses the dotted names produced by :func:`define_by_run`."""

        def params(pre: str) -> dict[str, Any]:
            return {k[len(pre):]: v for k, v in flat.items() if k.startswith(pre)}

        def pick(key: str) -> Choice:
            name = flat[key]
            if PAIR in name:  # a pair's halves, each with its own choice's parameters
                return Choice(name, {n: params(f"{prefix(key)}.{n}.") for n in name.split(PAIR)})
            return Choice(name, params(f"{prefix(key)}.{name}."))

        try:
            epochs = int(flat["train.epochs"])
            if max_epochs is not None:
                epochs = min(epochs, max_epochs)
            schedule = pick("lr_schedule.type") if "lr_schedule.type" in flat else Choice("none")
            return cls(
                encoders={m: pick(f"encoder.{m}") for m in modalities},
                fusion=pick("fusion.type"),
                fusion_weighting=str(flat.get("fusion.weights", "fixed")),
                head_hidden=int(flat["head.hidden"]),
                head_dropout=float(flat["head.dropout"]),
                loss=pick("loss.type"),
                aux_weight=float(flat.get("loss.aux_weight", 0.0)),
                optimizer=pick("optimizer.type"),
                lr=float(flat["optimizer.lr"]),
                weight_decay=float(flat.get("optimizer.weight_decay", 0.0)),
                lr_schedule=schedule,
                warmup_epochs=int(flat.get("lr_schedule.warmup_epochs", 0)),
                batch_size=0 if flat["train.batch_size"] == "auto" else int(flat["train.batch_size"]),
                epochs=max(1, epochs),
                modality_dropout=float(flat.get("train.modality_dropout", 0.0)),
                grad_clip=float(flat.get("train.grad_clip") or 0.0),
                amp=_bool(flat.get("train.amp", True)),
                augment=str(flat.get("train.augment", "none")),
                separate_encoders=tuple(m for m in modalities if not _bool(flat.get(f"encoder.{m}.share_weights",
                                                                                     True))),
                joined_inputs=tuple(m for m in modalities if flat.get(f"encoder.{m}.layout") == "joined"),
                strategy=str(flat.get("train.strategy") or "frozen"),
                frozen_epochs=int(flat.get("train.frozen_epochs") or 0),
                unfreeze_blocks=int(flat.get("train.unfreeze_blocks") or 0),
                encoder_lr_factor=float(flat.get("train.encoder_lr_factor") or 0.1),
                align_weight=float(flat.get("train.align_weight") or 0.0),
                reconstruct_weight=float(flat.get("train.reconstruct_weight") or 0.0),
                missing=str(flat.get("train.missing") or "zero"),
                soup_k=int(flat.get("train.soup_k") or 0),
                patience=int(flat.get("train.patience") or 0),
            )
        except KeyError as exc:
            raise ConfigError(f"trial configuration lacks {exc.args[0]!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "TrialConfig":
        """The configuration :meth:`to_dict` saved (a logged model's ``trial_config.json``),
        those saved before a field was renamed included (``fusion_weights``: the weighting)."""
        raw = {RENAMED.get(k, k): v for k, v in raw.items()}
        raw["encoders"] = {m: Choice(**c) for m, c in raw["encoders"].items()}
        for key in ("fusion", "loss", "optimizer", "lr_schedule"):
            raw[key] = Choice(**raw[key])
        for key in ("separate_encoders", "joined_inputs"):
            raw[key] = tuple(raw.get(key, ()))
        return cls(**raw)

"""Where pretrained weights come from (a local folder or file, the Hugging Face cache, the torch
hub cache), the one-line error when they are not there, ``autofusion weights``, and the
space's pretrained settings: validation and the conditional ``train.strategy`` parameters."""

from __future__ import annotations

import os

import optuna
import pytest
import yaml
from click.testing import CliRunner

from autofusion.cli import cli
from autofusion.errors import ConfigError
from autofusion.models import weights
from autofusion.spaces.load import SPACES_DIR, load_space
from autofusion.spaces.sample import define_by_run
from tests.tiny_models import tiny_bert

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches of this test's own."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def fake_hub_repo(caches, repo: str, files: dict[str, bytes], commit: str = "0123abcd") -> None:
    """A repository in the Hugging Face cache, laid out as huggingface_hub lays it out."""
    root = caches / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def test_a_local_folder_and_a_hub_cache_entry_resolve_offline(caches):
    folder = tiny_bert(caches / "bert")
    w = weights.hf_model(str(folder))
    assert w.path == str(folder.resolve()) and w.identity.startswith("bert@")
    tiny_bert(folder, layers=1)  # re-saved weights: another identity, so another feature cache
    assert weights.hf_model(str(folder)).identity != w.identity
    fake_hub_repo(caches, "tiny/bert", {"config.json": b"{}"})
    hub = weights.hf_model("tiny/bert")
    assert hub.path.endswith("snapshots/0123abcd") and hub.identity == "tiny/bert@0123abcd"
    fake_hub_repo(caches, "timm/test_vit.r160_in1k", {"model.safetensors": b"x"}, commit="feed")
    t = weights.timm_model("test_vit")
    assert t.path.endswith("feed/model.safetensors") and t.arch == "test_vit"


@pytest.mark.parametrize("lookup,name,pull", [
    (lambda: weights.hf_model("nobody/tiny-bert"), "nobody/tiny-bert", "nobody/tiny-bert"),
    (lambda: weights.timm_model("test_vit"), "test_vit", "timm:test_vit"),
    (lambda: weights.torchvision_model("resnet18"), "torchvision:resnet18", "torchvision:resnet18"),
])
def test_missing_weights_stop_with_one_line_naming_the_model_and_the_pull_command(caches, lookup, name, pull):
    with pytest.raises(ConfigError) as err:
        lookup()
    msg = str(err.value)
    assert "\n" not in msg and repr(name) in msg and f"autofusion weights pull {pull}" in msg


def test_bad_names_say_what_is_wrong(caches):
    with pytest.raises(ConfigError, match="unknown to timm"):
        weights.timm_model("no_such_model_x")
    with pytest.raises(ConfigError, match="checkpoint 'missing.pth' is not a file"):
        weights.timm_model("test_vit", "missing.pth")
    (caches / "empty").mkdir()
    with pytest.raises(ConfigError, match="no transformers model folder"):
        weights.hf_model(str(caches / "empty"))


def test_weights_list_and_pull_commands(caches):
    fake_hub_repo(caches, "tiny/bert", {"config.json": b"{}", "model.safetensors": b"0" * 2048})
    (caches / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"0" * 1024)
    out = CliRunner().invoke(cli, ["weights", "list"])
    assert out.exit_code == 0, out.output
    assert "tiny/bert" in out.output and "resnet18-f37072fd.pth" in out.output and "2 more in the caches" in out.output
    assert weights.torchvision_model("resnet18").path.endswith("resnet18-f37072fd.pth")
    out = CliRunner().invoke(cli, ["weights", "pull", "nobody/tiny-bert"])  # offline: one line, exit 2
    assert out.exit_code == 2 and out.output.count("\n") == 1 and "weights pull nobody/tiny-bert" in out.output


def _space(tmp_path, encoders: dict, train: dict | None = None):
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["encoders"]["text"] = {"choices": encoders}
    raw["train"].update(train or {})
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_space(space=path)


@pytest.mark.parametrize("encoders,train,message", [
    ({"hf_text": {"pooling": "mean"}}, {}, "encoders.text.choices.hf_text.model: missing key"),
    ({"hf_text": {"model": {"type": "categorical", "choices": ["a", "b"]}}}, {}, "cannot be searched"),
    ({"hf_text": {"model": "x", "pooling": "max"}}, {}, "must be one of: mean, cls, but got 'max'"),
    ({"hf_text": {"model": "x"}}, {"strategy": "thaw"}, "train.strategy: must be one of frozen, staged, finetune"),
    ({"hf_text": {"model": "x"}}, {"unfreeze_blocks": -1}, "train.unfreeze_blocks: must be >= 0"),
    ({"hf_text": {"model": "x"}}, {"encoder_lr_factor": 0}, "train.encoder_lr_factor: must be > 0 and <= 1"),
])
def test_pretrained_settings_are_validated_where_they_are_written(tmp_path, encoders, train, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _space(tmp_path, encoders, train)


def test_the_strategy_is_a_conditional_parameter(tmp_path):
    space = _space(tmp_path, {"hf_text": {"model": "x"}}, {
        "strategy": {"type": "categorical", "choices": ["frozen", "staged", "finetune"]},
        "frozen_epochs": {"type": "int", "low": 1, "high": 3}, "unfreeze_blocks": {"type": "categorical", "choices": [1, 0]},
        "encoder_lr_factor": {"type": "float", "low": 0.01, "high": 0.3, "log": True}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    fn = define_by_run(space, 4)
    seen = {}
    for _ in range(30):
        t = study.ask()
        fn(t)
        seen.setdefault(t.params["train.strategy"], set()).update(k for k in t.params if k.startswith("train."))
        study.tell(t, 0.0)
    assert seen["frozen"] >= {"train.strategy"} and not seen["frozen"] & {"train.frozen_epochs", "train.encoder_lr_factor"}
    assert {"train.frozen_epochs", "train.unfreeze_blocks", "train.encoder_lr_factor"} <= seen["staged"]
    assert "train.encoder_lr_factor" in seen["finetune"] and "train.frozen_epochs" not in seen["finetune"]
    plain = load_space("image_text")  # a space without pretrained settings samples none of them
    t = optuna.create_study().ask()
    define_by_run(plain, 4)(t)
    assert not any(k.split(".")[1] in ("strategy", "frozen_epochs", "unfreeze_blocks", "encoder_lr_factor")
                   for k in t.params)

"""Pretrained backbones by default, on tiny models made here: the weights shelf (``autofusion
weights add`` of a Hugging Face folder and of a timm state dict, found by their hub and timm
names), the recommended table, the pretrained choices the built-in and assembled spaces gain
when the weights are here (and the hint when they are not), pairs of encoders on one input
(validated, sampled, built), and the hand-built trial's encoders."""

from __future__ import annotations

import os

import optuna
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from autofusion.cli import cli
from autofusion.errors import ConfigError
from autofusion.models import weights
from autofusion.models.backbones import RECOMMENDED, USES, recommended, uses_of
from autofusion.models.encoders._timm import create
from autofusion.models.encoders.pair import EncoderPair
from autofusion.search.handbuilt import default_trial, first_trials
from autofusion.spaces.auto import auto_space_text, write_auto_space
from autofusion.spaces.load import SPACES_DIR, load_space
from autofusion.spaces.pretrained import summary
from autofusion.spaces.sample import define_by_run
from autofusion.trial import TrialConfig
from tests.tiny_models import tiny_bert, tiny_timm

os.environ["HF_HUB_OFFLINE"] = "1"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(autouse=True)
def cpu_and_empty_caches(tmp_path, monkeypatch):
    """The CPU's recommended set, and no Hugging Face or torch hub cache: only the shelf counts."""
    monkeypatch.setenv("AUTOFUSION_DEVICE", "cpu")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _add(*args: str) -> str:
    out = CliRunner().invoke(cli, ["weights", "add", *args])
    assert out.exit_code == 0, out.output
    return out.output


def _reviews(tmp_path, n: int = 40):
    """A text-only manifest: a review and its label."""
    rows = [{"review": f"{['great', 'poor'][i % 2]} product number {i}", "label": ["pos", "neg"][i % 2]}
            for i in range(n)]
    path = tmp_path / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_table_has_a_cpu_and_a_gpu_backbone_for_every_use():
    assert {(b.use, b.device) for b in RECOMMENDED} == {(u, d) for u in USES for d in ("cpu", "gpu")}
    cpu = {b.use: b for b in recommended("cpu")}
    assert cpu["text"].choice() == {"model": MINILM, "pooling": "mean"}
    assert cpu["image"].weights == "timm:efficientnet_lite0" and cpu["image"].choice() == {"model": "efficientnet_lite0"}
    assert uses_of(["image", "text", "tabular"]) == ["text", "image", "image+text"]
    import timm

    for b in RECOMMENDED:  # timm knows every timm name the table gives
        if b.weights.startswith("timm:"):
            assert timm.is_model(b.weights.split(":", 1)[1]), b.weights


def test_weights_add_a_folder_and_a_timm_state_dict_then_find_them_by_name(tmp_path):
    folder, vit = tiny_bert(tmp_path / "bert"), tiny_timm(tmp_path / "vit.pth")
    assert "text (hf_text)" in _add("tiny/bert", str(folder))
    assert "image (timm)" in _add("timm:test_vit", str(vit))
    (vit).unlink()  # a copy is on the shelf: the original may go
    text, image = weights.hf_model("tiny/bert"), weights.timm_model("test_vit")
    assert weights.origin(text) == weights.origin(image) == "the shelf"
    assert text.identity.startswith("tiny/bert@") and image.arch == "test_vit"
    assert sum(p.numel() for p in create("test_vit", image.path).parameters()) > 0
    out = CliRunner().invoke(cli, ["weights", "list"])
    assert out.exit_code == 0, out.output
    assert "tiny/bert" in out.output and "timm:test_vit" in out.output and "2 on the shelf" in out.output
    assert out.output.count("added from") == 2 and "MiB" in out.output


@pytest.mark.parametrize("name,file,message", [
    ("timm:test_resnet", "vit", "does not fit it"),  # another architecture's tensors
    ("tiny/bert", "vit", "no transformers model folder"),  # a state dict under a hub name
    ("timm:no_such_net", "vit", "unknown to timm"),
    ("tiny/bert", "missing", "does not exist"),
])
def test_weights_add_refuses_what_the_name_does_not_fit_in_one_line(tmp_path, name, file, message):
    path = tiny_timm(tmp_path / "vit.pth") if file == "vit" else tmp_path / "missing"
    out = CliRunner().invoke(cli, ["weights", "add", name, str(path)])
    assert out.exit_code == 2 and out.output.count("\n") == 1 and message in out.output, out.output


def test_an_assembled_space_offers_the_recommended_encoder_only_when_its_weights_are_here(tmp_path):
    manifest = _reviews(tmp_path)
    text, _ = auto_space_text(manifest)
    assert "hf_text" not in text and "tfidf+hf_text" not in text  # nothing here: today's space
    lines = summary(write_auto_space(manifest, home=tmp_path / "h1"))
    assert lines == [f"recommended pretrained encoders not found here (cpu): text {MINILM}; the search goes on "
                     f"without them. Fetch them where a network exists with: autofusion weights pull {MINILM} "
                     "(or register a copy: autofusion weights add NAME PATH)"]
    _add("tiny/bert", str(tiny_bert(tmp_path / "bert")))  # other text weights on the shelf: offered instead
    raw = yaml.safe_load(auto_space_text(manifest)[0])
    assert raw["encoders"]["text"]["choices"]["hf_text"] == {"model": "tiny/bert"}
    _add(MINILM, str(tmp_path / "bert"))  # the recommended one (a tiny stand-in under its name)
    raw = yaml.safe_load(auto_space_text(manifest)[0])
    choices = raw["encoders"]["text"]["choices"]
    assert choices["hf_text"] == {"model": MINILM, "pooling": "mean"} and choices["tfidf+hf_text"] == {}
    assert list(choices)[:2] == ["tfidf", "embedding_bag"] and "strategy" not in raw["train"]  # frozen on a CPU
    space = write_auto_space(manifest, home=tmp_path / "h2")
    assert summary(space) == [f"pretrained encoders (cpu): text: hf_text {MINILM} (the shelf), tfidf+hf_text; frozen: "
                              "their outputs are computed once per dataset and cached"]
    default = default_trial(space, "classification")
    assert default["encoder.text"] == "tfidf+hf_text"  # the hand-built model: both
    assert all(t["encoder.text"] == "tfidf+hf_text" for t in first_trials(space, "classification", 9, 0))


def test_weights_that_cannot_be_here_are_ruled_out_from_the_folders_alone(tmp_path):
    """With empty caches and shelf, no recommended name may be here, and a built-in space loads
    without importing timm or torchvision (2-3 s of every search's start-up); a cache folder
    or file that could hold the weights sends the lookup on to the libraries."""
    import subprocess
    import sys

    names = [b.weights for b in RECOMMENDED]
    assert not any(weights.maybe_here(n) for n in names), names
    code = ("import sys; from autofusion.spaces.load import load_space; load_space('image_text'); "
            "print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    (tmp_path / "hf" / "models--timm--efficientnet_lite0.ra_in1k").mkdir(parents=True)
    (tmp_path / "hf" / f"models--{MINILM.replace('/', '--')}").mkdir()
    assert weights.maybe_here("timm:efficientnet_lite0") and weights.maybe_here(MINILM)
    assert not weights.maybe_here("timm:resnet18") and not weights.maybe_here("torchvision:resnet18")
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"")
    assert weights.maybe_here("torchvision:resnet18") and weights.maybe_here("timm:resnet18")
    assert weights.maybe_here(str(tmp_path / "hf"))  # a local path: the lookup decides

def test_built_in_spaces_gain_what_is_here_and_a_gpu_searches_the_strategy(tmp_path, monkeypatch):
    plain = load_space("image_text")
    assert "hf_text" not in plain.file.encoders["text"].choices and not plain.text
    _add(MINILM, str(tiny_bert(tmp_path / "bert")))
    space = load_space("image_text")
    assert {"hf_text", "tfidf+hf_text"} <= set(space.file.encoders["text"].choices)
    assert "timm" not in space.file.encoders["image"].choices and space.file.train.strategy is None
    assert "with the pretrained encoders found here" in space.raw_text()  # what the search logs and resumes
    assert "timm:efficientnet_lite0 openai/clip-vit-base-patch32" in summary(space)[-1]
    monkeypatch.setenv("AUTOFUSION_DEVICE", "gpu")  # its own pick is missing: the CPU's is offered
    gpu = load_space("image_text")
    assert gpu.file.encoders["text"].choices["hf_text"]["model"] == MINILM
    assert gpu.file.train.strategy.choices == ["frozen", "staged", "finetune"]
    assert "autofusion weights pull intfloat/e5-base-v2 " in summary(gpu)[-1]
    assert default_trial(gpu, "classification")["train.strategy"] == "frozen"


def _space_with(tmp_path, text_choices: dict):
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    raw["encoders"]["text"] = {"choices": text_choices}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_space(space=path)


@pytest.mark.parametrize("choices,message", [
    ({"embedding_bag": {}, "tfidf": {}, "embedding_bag+tfidf": {}}, "'embedding_bag' reads the modality's own arrays"),
    ({"tfidf": {}, "tfidf+hf_text": {}}, "'hf_text' is not a choice of this section"),
    ({"tfidf": {}, "hf_text": {"model": "x"}, "tfidf+hf_text": {"dim": 8}}, "a pair takes no parameters of its own"),
    ({"tfidf": {}, "tfidf+tfidf": {}}, "two different encoders"),
])
def test_a_pair_is_validated_where_it_is_written(tmp_path, choices, message):
    with pytest.raises(ConfigError, match=f"encoders.text.choices.*: .*{message}"):
        _space_with(tmp_path, choices)


def test_a_pair_samples_each_halfs_own_parameters_and_builds_both_encoders(tmp_path):
    space = _space_with(tmp_path, {"tfidf": {"dim": {"type": "categorical", "choices": [8, 16]}},
                                   "hf_text": {"model": "x", "pooling": "cls"}, "tfidf+hf_text": {}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    fn = define_by_run(space, 2)
    for _ in range(12):
        t = study.ask()
        consts = fn(t)
        flat = {**t.params, **consts}
        if flat["encoder.text"] == "tfidf+hf_text":
            break
        study.tell(t, 0.0)
    assert "encoder.text.tfidf.dim" in flat and flat["encoder.text.hf_text.pooling"] == "cls"
    tc = TrialConfig.from_flat(flat, ["image", "text"])
    halves = tc.encoders["text"].parts()
    assert [(c.name, c.params.get("pooling")) for c in halves] == [("tfidf", None), ("hf_text", "cls")]
    assert halves[0].params["dim"] in (8, 16)


def test_two_encoders_side_by_side_give_both_vectors_and_both_token_sequences():
    class Fixed(torch.nn.Module):
        def __init__(self, dim: int, tokens: int, pad: bool) -> None:
            super().__init__()
            self.out_dim, self.t, self.pad = dim, tokens, pad

        def forward(self, x):
            x = x["ids"] if isinstance(x, dict) else x  # several arrays come as a dict
            return x.float().mean(dim=1, keepdim=True).expand(-1, self.out_dim)

        def tokens(self, x):
            x = x["ids"] if isinstance(x, dict) else x
            toks = x.float()[:, : self.t, None].expand(-1, -1, self.out_dim)
            return toks, (torch.zeros(x.shape[0], self.t, dtype=torch.bool) if self.pad else None)

    pair = EncoderPair([Fixed(2, 1, False), Fixed(3, 4, True)])
    x = {"0/x": torch.ones(5, 6), "1/ids": torch.full((5, 6), 2.0), "1/mask": torch.ones(5, 6)}
    assert pair.out_dim == 5 and pair(x).tolist()[0] == [1, 1, 2, 2, 2]
    toks, pad = pair.tokens(x)
    assert toks.shape == (5, 5, 5) and pad.shape == (5, 5) and not pad.any()
    assert toks[0, 0].tolist() == [1, 1, 0, 0, 0] and toks[0, 1].tolist() == [0, 0, 2, 2, 2]

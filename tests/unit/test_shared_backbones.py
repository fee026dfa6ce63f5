"""An ensemble whose members hold the same frozen pretrained backbones (a tiny BERT and timm's
test_vit, made here) computes each once per batch: logged with ``log_ensemble_model`` to a
sqlite store in tmp_path, loaded with ``mlflow.pyfunc.load_model``, its backbones' first layers
counted with forward hooks. A member whose backbone was fine-tuned keeps its own. Sharing does
not change the predictions, and an importance pass over cached features is the models on the
perturbed rows."""

from __future__ import annotations

import math
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from autofusion import tracking
from autofusion.data.demo import write_demo
from autofusion.data.prepare import prepare_data
from autofusion.models.build import build_model, whole_model
from autofusion.search.features import build_features
from autofusion.search.records import PERMUTATION, REMOVAL
from autofusion.serving import shared_backbones as backbones
from autofusion.serving.ensemble import Member, log_ensemble_model
from autofusion.serving.inputs import model_inputs
from autofusion.serving.perturb import Perturbation
from autofusion.spaces.load import SPACES_DIR, load_space
from autofusion.trial import TrialConfig
from tests.helpers import flat_config, new_store
from tests.tiny_models import tiny_bert, tiny_timm

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, store_template):
    """(data, two frozen members' trial configs, a store URI, request rows)."""
    root = tmp_path_factory.mktemp("shared")
    raw = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text())
    vit = str(tiny_timm(root / "vit.pth"))
    raw["encoders"] = {"text": {"choices": {"hf_text": {"model": str(tiny_bert(root / "bert")), "max_tokens": 8}}},
                       "image": {"choices": {"timm": {"model": "test_vit", "checkpoint": vit, "max_tokens": 4}}}}
    (root / "space.yaml").write_text(yaml.safe_dump(raw))
    space = load_space(space=root / "space.yaml")
    manifest = write_demo("image_text", root / "demo", num_samples=24)
    data = prepare_data(manifest, space, seed=0, home=root / "home")
    build_features(data, space, home=root / "home")
    params = {f"encoder.{m}.{n}.{k}": v for m, c in raw["encoders"].items() for n, p in c["choices"].items()
              for k, v in p.items()}
    tcs = [TrialConfig.from_flat(flat_config(["image", "text"], {"image": "timm", "text": "hf_text"}, fusion,
                                             **params, **{"train.strategy": "frozen"}), ["image", "text"])
           for fusion in ("mid", "attention")]
    rows = pd.read_csv(manifest).head(10)
    request = pd.DataFrame({"image": [str(manifest.parent / p) for p in rows["image"]], "text": rows["text"]})
    return data, tcs, new_store(root / "mlruns", store_template), request


def _logged(setup, tune_one: bool) -> tuple[object, list]:
    """The ensemble as served, and its members' whole models as trained (one member's text
    backbone changed, as fine-tuning changes it, when ``tune_one``)."""
    data, tcs, uri, _ = setup
    members = []
    for i, tc in enumerate(tcs):
        torch.manual_seed(i)
        model = whole_model(build_model(tc, data.meta).eval(), tc, data.meta)
        if tune_one and i == 1:
            with torch.no_grad():
                next(model.encoders["text"].backbone.parameters()).add_(0.01)
        members.append(Member(model, tc, (0.6, 0.4)[i], i, None))
    run = tracking.client(uri).create_run(tracking.experiment_id(uri, "shared")).info.run_id
    model_uri = log_ensemble_model(uri, run, members, data)
    return mlflow.pyfunc.load_model(model_uri), members


def _first_layers(ensemble) -> list[torch.nn.Module]:
    """The first layer of every distinct backbone the loaded members hold."""
    seen: dict[int, torch.nn.Module] = {}
    for m in ensemble.unwrap_python_model().members:
        for enc in backbones.pretrained_encoders(m.model).values():
            seen.setdefault(id(enc.backbone), enc.backbone)
    return [next(m for m in b.modules() if not list(m.children()) and list(m.parameters(recurse=False)))
            for b in seen.values()]


def _count(layers: list[torch.nn.Module]) -> list[int]:
    counts = [0] * len(layers)
    for i, layer in enumerate(layers):
        layer.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


def test_two_members_sharing_backbones_run_each_once_per_batch(setup, monkeypatch):
    _, _, _, request = setup
    ensemble, members = _logged(setup, tune_one=False)
    assert ensemble.unwrap_python_model().shared_backbones == 2  # the second member's text and image backbones
    layers = _first_layers(ensemble)
    assert len(layers) == 2  # one BERT, one ViT for both members
    counts = _count(layers)
    pred = ensemble.predict(request)
    assert counts == [1, 1]
    monkeypatch.setattr(backbones, "BACKBONE_BATCH", 4)  # a request of 10 rows runs in batches of 4
    ensemble.predict(request)
    assert counts == [1 + math.ceil(10 / 4)] * 2
    # the same probabilities as each member's whole model run on its own model inputs
    data = setup[0]
    expected = 0
    for m in members:
        inputs, present = model_inputs(request, data.meta, m.model.feature_keys, data.extractors)
        with torch.no_grad():
            expected = expected + m.weight * torch.softmax(m.model(inputs, present), dim=-1).numpy()
    probs = pred[[f"prob_{c}" for c in data.meta.classes]].to_numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_each_distinct_backbone_is_saved_once(setup, tmp_path):
    """Two members holding the same frozen BERT and ViT: two backbone files, and neither
    member's own weights hold a backbone; a member whose BERT was tuned adds its own file."""
    from autofusion.serving.pyfunc import BACKBONE_WEIGHTS

    for tune_one, files in ((False, 2), (True, 3)):
        ensemble, members = _logged(setup, tune_one=tune_one)
        root = Path(mlflow.artifacts.download_artifacts(ensemble.metadata.get_model_info().model_uri,
                                                        dst_path=str(tmp_path / str(tune_one))))
        folder = next(root.rglob(BACKBONE_WEIGHTS))
        assert sorted(p.name for p in folder.iterdir()) == [f"{i}.pt" for i in range(files)]
        for member in ("member_0", "member_1"):
            own = torch.load(folder.parent / member / "weights.pt", weights_only=True)
            assert not [k for k in own if ".backbone." in k]
            assert len(own) < len(members[0].model.state_dict())


def test_a_fine_tuned_backbone_is_not_shared(setup):
    _, _, _, request = setup
    ensemble, _ = _logged(setup, tune_one=True)
    assert ensemble.unwrap_python_model().shared_backbones == 1  # the image backbone only
    layers = _first_layers(ensemble)
    assert len(layers) == 3
    counts = _count(layers)
    ensemble.predict(request)
    assert counts == [1, 1, 1]


def test_an_importance_pass_is_the_model_on_shuffled_or_missing_inputs(setup):
    """A pass over cached encoder features (serving/encoded.py) gives what the whole models give
    on the rows with the text shuffled, or with the text marked absent; token-level (attention)
    and pooled (mid) fusion, shared backbones."""
    data, _, _, request = setup
    ensemble, members = _logged(setup, tune_one=False)
    py = ensemble.unwrap_python_model()
    cache: dict = {}
    py.outputs(request, cache)  # the intact pass fills the request's cache
    order = np.random.default_rng(0).permutation(len(request))
    shuffled = py.outputs(request, cache, Perturbation("text", ("text",), PERMUTATION, order))
    np.testing.assert_allclose(shuffled, py.outputs(request.assign(text=request["text"].to_numpy()[order])), atol=1e-5)
    removed = py.outputs(request, cache, Perturbation("text", ("text",), REMOVAL))
    expected = 0
    for m in members:
        inputs, present = model_inputs(request, data.meta, m.model.feature_keys, data.extractors)
        present["text"] = torch.zeros_like(present["text"])
        with torch.no_grad():
            expected = expected + m.weight * torch.softmax(m.model(inputs, present), dim=-1).numpy()
    np.testing.assert_allclose(removed, expected, atol=1e-5)


def test_a_pass_that_reads_cells_again_runs_each_backbone_once_and_leaves_the_cache_intact(setup):
    """A pass that reads an input again from its changed cells (a field of a joined text; here
    the text read as a field) runs the shared backbone once for both members; the next pass,
    with other changes, and the intact rows get their own outputs, not that pass's."""
    _, _, _, request = setup
    ensemble, _ = _logged(setup, tune_one=False)
    py = ensemble.unwrap_python_model()
    counts = _count(_first_layers(ensemble))
    cache: dict = {}
    intact = py.outputs(request, cache)
    orders = [np.random.default_rng(seed).permutation(len(request)) for seed in (0, 1)]
    base = list(counts)
    got = [py.outputs(request, cache, Perturbation("text", ("text",), PERMUTATION, o, field=True)) for o in orders]
    assert sorted(c - b for c, b in zip(counts, base)) == [0, 2]  # image never; text once a pass, not once a member
    np.testing.assert_allclose(py.outputs(request, cache), intact, atol=1e-6)
    for order, g in zip(orders, got):
        np.testing.assert_allclose(g, py.outputs(request.assign(text=request["text"].to_numpy()[order])), atol=1e-5)

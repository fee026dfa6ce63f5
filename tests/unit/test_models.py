"""Every registered encoder with every fusion operator, for each task's modalities (tabular
fields and sensor series included), builds and takes one training step on CPU; the model
contract holds."""

from __future__ import annotations

import pytest
import torch

from autofusion.models import ENCODERS, FUSIONS
from autofusion.models.build import build_model, count_parameters
from autofusion.search.features import add_extractor
from autofusion.spaces.sample import TrialConfig
from autofusion.train.batches import iter_batches
from autofusion.train.loop import fit
from tests.helpers import fake_data, flat_config

TASKS = {"image_text": ["image", "text"], "image_audio": ["image", "audio"],
         "audio_video": ["audio", "video"], "text_audio": ["text", "audio"],
         "tabular_sensor": ["tabular", "sensor"]}
CHEAP = {"image": "small_cnn", "text": "embedding_bag", "audio": "wave_cnn", "video": "frame_pool",
         "tabular": "mlp", "sensor": "tcn"}
DATA = {task: fake_data(mods, n=8) for task, mods in TASKS.items()}


def _cases():
    for task, mods in TASKS.items():
        for fusion in FUSIONS.names():
            for m in mods:
                for enc in ENCODERS[m].names():
                    if getattr(ENCODERS[m].get(enc), "pretrained", False):
                        continue  # they need weights: tests/unit/test_pretrained*.py build tiny ones
                    yield pytest.param(task, fusion, m, enc, id=f"{task}-{fusion}-{m}={enc}")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("task,fusion,modality,encoder", list(_cases()))
def test_every_encoder_with_every_fusion_trains_one_step(task, fusion, modality, encoder):
    mods = TASKS[task]
    data = DATA[task]
    encoders = {m: CHEAP[m] for m in mods}
    encoders[modality] = encoder
    tc = TrialConfig.from_flat(flat_config(mods, encoders, fusion), mods)
    if ENCODERS[modality].get(encoder).extractor is not None:
        add_extractor(data, modality, encoder, {})
    torch.manual_seed(0)
    model = build_model(tc, data.meta)
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    history = fit(model, data, tc, device=torch.device("cpu"))
    assert len(history) == 1 and history[0]["train_loss"] == history[0]["train_loss"]  # not NaN
    changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert any(k.startswith(f"encoders.{modality}.") for k in changed), "the encoder did not learn"
    assert count_parameters(model) > 0


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_output_shape_and_missing_modality(fusion):
    mods = ["image", "text"]
    data = fake_data(mods, n=8, classes=5)
    tc = TrialConfig.from_flat(flat_config(mods, CHEAP, fusion), mods)
    model = build_model(tc, data.meta).eval()
    inputs, present, _ = next(iter_batches(data, data.indices(0), 4, torch.device("cpu")))
    out = model(inputs, present)
    assert out.shape == (4, 5) and torch.isfinite(out).all()
    present["text"] = torch.tensor([True, False, True, False])
    noisy = dict(inputs)
    noisy["text"] = torch.randint(2, 30, inputs["text"].shape, dtype=inputs["text"].dtype)
    a, b = model(inputs, present), model(noisy, present)
    assert torch.allclose(a[1], b[1], atol=1e-5) and torch.allclose(a[3], b[3], atol=1e-5)


@pytest.mark.parametrize("target,loss", [("multilabel", "bce"), ("regression", "mse"), ("regression", "huber")])
def test_other_targets_train(target, loss):
    mods = ["image", "text"]
    data = fake_data(mods, n=16, classes=3, target=target)
    tc = TrialConfig.from_flat(flat_config(mods, CHEAP, "mid", **{"loss.type": loss}), mods)
    history = fit(build_model(tc, data.meta), data, tc, device=torch.device("cpu"))
    key = "val_f1_macro" if target == "multilabel" else "val_rmse"
    assert key in history[0]


def test_aux_losses_and_modality_dropout_train():
    mods = ["image", "text"]
    data = fake_data(mods, n=16)
    tc = TrialConfig.from_flat(flat_config(mods, CHEAP, "attention", **{"loss.aux_weight": 0.5,
                                                                          "train.modality_dropout": 0.5}), mods)
    model = build_model(tc, data.meta)
    assert set(model.aux_heads) == {"image", "text"}
    fit(model, data, tc, device=torch.device("cpu"))
    assert model.aux_heads["image"].weight.grad is not None


@pytest.mark.parametrize("mods", [["image", "text"], ["audio", "video"]])
def test_light_augmentation_keeps_shapes_and_trains(mods):
    from autofusion.train.batches import augment_batch

    data = fake_data(mods, n=16)
    tc = TrialConfig.from_flat(flat_config(mods, CHEAP, "mid", **{"train.augment": "light"}), mods)
    assert tc.augment == "light"
    model = build_model(tc, data.meta)
    inputs, _, _ = next(iter_batches(data, data.indices(0), 8, torch.device("cpu")))
    torch.manual_seed(0)
    out = augment_batch(model, inputs, "light")
    for m in mods:
        assert out[m].shape == inputs[m].shape and out[m].dtype == inputs[m].dtype
    assert any(not torch.equal(out[m], inputs[m]) for m in mods)
    assert augment_batch(model, inputs, "none") is inputs
    fit(model, data, tc, device=torch.device("cpu"))

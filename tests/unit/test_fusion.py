"""Every registered fusion operator on fake encoder outputs: shapes, gradients, missing
modalities and padding (the registry parametrizes, so a new operator is tested for free)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import autofusion.models.fusion  # noqa: F401  (fills the registry)
from autofusion.errors import ConfigError
from autofusion.models.base import FUSIONS, Fusion

B = 4
NUM_OUTPUTS = 3
TWO = {"image": 32, "text": 24}
THREE = {"image": 32, "text": 24, "audio": 16}
SEQ_LEN = {"image": 5, "text": 7, "audio": 6}
MODES = ("fixed", "learned", "gated")

NAMES = FUSIONS.names()
DIMS = pytest.mark.parametrize("in_dims", [TWO, THREE], ids=["two", "three"])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: extra intra-op threads only spin, and badly so on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_feats(fusion: Fusion, seed: int = 0) -> dict[str, object]:
    """Pooled ``[B, D]`` or ``(tokens [B, T, D], pad [B, T] | None)`` per modality."""
    g = torch.Generator().manual_seed(seed)
    feats: dict[str, object] = {}
    for m, d in fusion.in_dims.items():
        if not fusion.uses_tokens:
            feats[m] = torch.randn(B, d, generator=g)
            continue
        toks = torch.randn(B, SEQ_LEN[m], d, generator=g)
        if m == "image":
            pad = None  # encoders without padding return None
        else:
            pad = torch.zeros(B, SEQ_LEN[m], dtype=torch.bool)
            pad[1, -3:] = True
            pad[3, -2:] = True
        feats[m] = (toks, pad)
    return feats


def all_present(fusion: Fusion) -> dict[str, Tensor]:
    return {m: torch.ones(B, dtype=torch.bool) for m in fusion.modalities}


def perturb_rows(feat: object, rows: Tensor) -> object:
    """Replaces the features of ``rows`` (tokens and padding alike) with other values."""
    if isinstance(feat, tuple):
        toks, pad = feat
        toks = toks.clone()
        toks[rows] = 100 * torch.randn_like(toks[rows]) + 7
        return toks, pad
    feat = feat.clone()
    feat[rows] = 100 * torch.randn_like(feat[rows]) + 7
    return feat


def build(name: str, in_dims: dict[str, int], weights: str) -> Fusion:
    torch.manual_seed(0)
    return FUSIONS.get(name)(in_dims, NUM_OUTPUTS, weights)


def check_grads(fusion: Fusion, out: Tensor) -> None:
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in fusion.named_parameters():
        assert p.grad is not None, f"no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {pname}"


@pytest.mark.parametrize("weights", MODES)
@pytest.mark.parametrize("name", NAMES)
@DIMS
def test_shape_and_every_parameter_gets_a_gradient(name, weights, in_dims):
    fusion = build(name, in_dims, weights)
    out = fusion(fake_feats(fusion), all_present(fusion))
    assert out.shape == (B, fusion.out_dim)
    if fusion.produces_outputs:
        assert fusion.out_dim == NUM_OUTPUTS
    assert torch.isfinite(out).all()
    check_grads(fusion, out)


@pytest.mark.parametrize("weights", MODES)
@pytest.mark.parametrize("name", NAMES)
@DIMS
def test_missing_modality_does_not_leak(name, weights, in_dims):
    fusion = build(name, in_dims, weights).eval()
    feats = fake_feats(fusion)
    rows = torch.tensor([0, 2])
    assert sorted(fusion.modalities) == sorted(in_dims)  # every input is checked below
    for m in fusion.modalities:
        present = all_present(fusion)
        present[m][rows] = False
        with torch.no_grad():
            out = fusion(feats, present)
            moved = fusion({**feats, m: perturb_rows(feats[m], rows)}, present)
        assert torch.isfinite(out).all() and torch.isfinite(moved).all()
        torch.testing.assert_close(moved, out, rtol=0, atol=1e-6, msg=f"{m} leaks")


@pytest.mark.parametrize("weights", MODES)
@pytest.mark.parametrize("name", NAMES)
@DIMS
def test_single_modality_rows_are_finite_with_finite_gradients(name, weights, in_dims):
    fusion = build(name, in_dims, weights)
    mods = fusion.modalities
    present = {m: torch.tensor([i % len(mods) == j for i in range(B)]) for j, m in enumerate(mods)}
    out = fusion(fake_feats(fusion), present)
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in fusion.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", [n for n in NAMES if FUSIONS.get(n).uses_tokens])
def test_padded_positions_are_ignored(name):
    fusion = build(name, THREE, "gated").eval()
    feats = fake_feats(fusion)
    toks, pad = feats["text"]
    moved = toks.clone()
    moved[pad] = 50 * torch.randn_like(moved[pad])
    with torch.no_grad():
        out = fusion(feats, all_present(fusion))
        out2 = fusion({**feats, "text": (moved, pad)}, all_present(fusion))
    torch.testing.assert_close(out2, out, rtol=0, atol=1e-5)


@pytest.mark.parametrize("weights", ["learned", "gated"])
@pytest.mark.parametrize("name", NAMES)
@DIMS
def test_fusion_weights_sum_to_one(name, weights, in_dims):
    fusion = build(name, in_dims, weights)
    fusion(fake_feats(fusion), all_present(fusion))
    w = fusion.input_weights()
    assert w is not None and list(w) == list(in_dims)
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_fixed_weights_report_none(name):
    fusion = build(name, TWO, "fixed")
    fusion(fake_feats(fusion), all_present(fusion))
    assert fusion.input_weights() is None


def test_unknown_fusion_names_the_known_ones():
    with pytest.raises(ConfigError) as err:
        FUSIONS.get("erly")
    msg = str(err.value)
    assert "'erly'" in msg
    assert all(n in msg for n in NAMES)


def test_film_target_must_be_a_modality():
    cls = FUSIONS.get("film")
    assert cls(THREE, NUM_OUTPUTS, target="audio").target == "audio"
    with pytest.raises(ConfigError, match="known: image, text, audio"):
        cls(THREE, NUM_OUTPUTS, target="video")


@pytest.mark.parametrize("name", ["attention", "early"])
def test_dim_is_rounded_up_to_a_multiple_of_heads(name):
    fusion = FUSIONS.get(name)(TWO, NUM_OUTPUTS, dim=30, heads=4)
    assert fusion.out_dim == 32


def test_tensor_fusion_refuses_huge_weight_tensors():
    dims = {m: 8 for m in ("image", "text", "audio", "video")}
    with pytest.raises(ConfigError, match="low_rank_tensor"):
        FUSIONS.get("tensor")(dims, NUM_OUTPUTS, dim=64, out=64)


def test_all_registered_operators_are_covered():
    expected = {"attention", "early", "film", "gated", "late", "low_rank_tensor", "mid", "tensor"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_learned_weights_change_the_output(name):
    fusion = build(name, THREE, "learned").eval()
    feats = fake_feats(fusion)
    with torch.no_grad():
        out = fusion(feats, all_present(fusion))
        fusion.weighting.logits.copy_(torch.tensor([2.0, -1.0, 0.5]))
        out2 = fusion(feats, all_present(fusion))
    assert not torch.allclose(out, out2)

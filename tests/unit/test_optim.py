"""Optimizers and learning-rate schedules by name: each optimizer steps only the trainable
parameters with its declared settings, and each schedule (after the linear warm-up) is the
multiplier of the base rate its docstring says."""

from __future__ import annotations

import math

import pytest
import torch

from autofusion.train.optim import (
    OPTIMIZERS,
    SCHEDULES,
    build_optimizer,
    build_schedule,
)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    m[0].weight.requires_grad_(False)  # a frozen part
    return m


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_steps_only_the_trainable_parameters(name):
    m = _model()
    frozen = m[0].weight.detach().clone()
    opt = build_optimizer(name, {}, m.parameters(), lr=0.1, weight_decay=0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == 3  # the frozen weight is left out
    before = m[1].weight.detach().clone()
    m(torch.randn(8, 4)).pow(2).mean().backward()
    opt.step()
    assert torch.equal(m[0].weight, frozen) and not torch.equal(m[1].weight, before)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["weight_decay"] == 0.01


def test_declared_settings_reach_the_optimizer():
    sgd = build_optimizer("sgd", {"momentum": 0.5, "nesterov": False}, _model().parameters(), 0.1, 0.0)
    assert sgd.param_groups[0]["momentum"] == 0.5 and not sgd.param_groups[0]["nesterov"]
    no_momentum = build_optimizer("sgd", {"momentum": 0.0}, _model().parameters(), 0.1, 0.0)
    assert not no_momentum.param_groups[0]["nesterov"]  # torch refuses Nesterov without momentum
    adamw = build_optimizer("adamw", {"beta1": 0.8}, _model().parameters(), 0.1, 0.0)
    assert adamw.param_groups[0]["betas"] == (0.8, 0.999)


def _factors(name: str, params: dict, total: int, warmup: int = 0) -> list[float]:
    opt = torch.optim.SGD(_model().parameters(), lr=1.0)
    sched = build_schedule(name, params, opt, total, warmup)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_the_schedules_are_their_documented_multipliers():
    assert _factors("none", {}, 5) == [1.0] * 5
    cos = _factors("cosine", {"min_factor": 0.1}, 11)
    assert cos == pytest.approx([0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 11)) for s in range(11)])
    assert cos[0] == pytest.approx(1.0) and cos == sorted(cos, reverse=True)
    steps = _factors("step", {"gamma": 0.5, "every_fraction": 0.25}, 8)
    assert steps == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    one = _factors("onecycle", {"peak_factor": 4.0, "pct_start": 0.5}, 10)
    assert one[0] == 1.0 and max(one) == pytest.approx(4.0) and one.index(max(one)) == 5 and one[-1] < one[5]


def test_the_warm_up_ramps_linearly_into_the_schedule():
    f = _factors("none", {}, 6, warmup=3)
    assert f[:3] == pytest.approx([0.25, 0.5, 0.75]) and f[3:] == [1.0, 1.0, 1.0]


def test_every_schedule_is_registered_and_documented():
    assert SCHEDULES.names() == ["cosine", "none", "onecycle", "step"]
    assert all(SCHEDULES.summary(n) for n in SCHEDULES.names())
    assert all(OPTIMIZERS.summary(n) for n in OPTIMIZERS.names())

"""Optimizers and learning-rate schedules, registered by name.

Schedules step once per batch; each is a multiplier of the base learning rate built on
``LambdaLR``, with an optional linear warm-up in front.
"""

from __future__ import annotations

import math
from typing import Annotated, Callable, Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from autofusion.components import Ge, Le, NonNegative, Rate, Registry

OptimizerFactory = Callable[..., Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
SCHEDULES: Registry[Callable[..., Callable[[int], float]]] = Registry("lr_schedule")


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable, lr: float, weight_decay: float, *, momentum: Rate = 0.9, nesterov: bool = True) -> Optimizer:
    """SGD with momentum (Nesterov by default)."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                           nesterov=bool(nesterov) and momentum > 0)


@OPTIMIZERS.register("adam")
def adam(params: Iterable, lr: float, weight_decay: float, *, beta1: Rate = 0.9, beta2: Rate = 0.999) -> Optimizer:
    """Adam (L2 weight decay added to the gradient)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=(beta1, beta2))


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable, lr: float, weight_decay: float, *, beta1: Rate = 0.9, beta2: Rate = 0.999) -> Optimizer:
    """AdamW (decoupled weight decay)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(beta1, beta2))


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Iterable, lr: float, weight_decay: float, *, momentum: Rate = 0.0, alpha: Rate = 0.99) -> Optimizer:
    """RMSprop."""
    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=momentum, alpha=alpha)


@SCHEDULES.register("none")
def constant(total_steps: int) -> Callable[[int], float]:
    """Constant learning rate."""
    return lambda step: 1.0


@SCHEDULES.register("cosine")
def cosine(total_steps: int, *, min_factor: Annotated[float, Ge(0), Le(1)] = 0.01) -> Callable[[int], float]:
    """Cosine decay to ``min_factor`` of the base rate."""
    return lambda step: min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))


@SCHEDULES.register("step")
def step_decay(total_steps: int, *, gamma: NonNegative = 0.1, every_fraction: float = 0.33) -> Callable[[int], float]:
    """Multiplies the rate by ``gamma`` every ``every_fraction`` of training."""
    every = max(1, int(total_steps * every_fraction))
    return lambda step: gamma ** (step // every)


@SCHEDULES.register("onecycle")
def one_cycle(total_steps: int, *, peak_factor: float = 10.0, pct_start: float = 0.3) -> Callable[[int], float]:
    """One-cycle (Smith 2018): ramp up to ``peak_factor`` x base, then cosine down."""
    up = max(1, int(total_steps * pct_start))

    def f(step: int) -> float:
        if step < up:
            return 1.0 + (peak_factor - 1.0) * step / up
        t = min((step - up) / max(total_steps - up, 1), 1.0)
        return 0.01 + (peak_factor - 0.01) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def build_optimizer(name: str, params: dict, model_params: Iterable, lr: float, weight_decay: float) -> Optimizer:
    """Builds a registered optimizer over the trainable parameters."""
    return OPTIMIZERS.get(name)([p for p in model_params if p.requires_grad], lr, weight_decay, **params)


def build_schedule(name: str, params: dict, optimizer: Optimizer, total_steps: int, warmup_steps: int) -> LambdaLR:
    """A per-batch LambdaLR: linear warm-up over ``warmup_steps``, then the named schedule."""
    body = SCHEDULES.get(name)(max(total_steps - warmup_steps, 1), **params)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return body(step - warmup_steps)

    return LambdaLR(optimizer, factor)

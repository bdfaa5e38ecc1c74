"""Learning-rate, weight-decay and EMA-momentum schedules as pure functions of the step.

Pure functions (not stateful scheduler objects) make exact resume trivial: the value at a
step depends on nothing but the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupDecay:
    """Linear warmup ``start -> peak`` over ``warmup`` steps, then ``peak -> final`` by a cosine
    or a linear decay that reaches ``final`` exactly at the last step.

    With ``final == peak`` this is the released V-JEPA 2 schedule (warmup, then constant); the
    linear shape is the cooldown (the released cooldown stretches its schedule by 1.25 and so
    never reaches its final value; this one does).
    """

    start: float
    peak: float
    final: float
    warmup: int
    total: int
    shape: str = "cosine"

    def __post_init__(self) -> None:
        if self.shape not in ("cosine", "linear"):
            raise ValueError(f"schedule shape must be 'cosine' or 'linear', got {self.shape!r}")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start + (self.peak - self.start) * step / max(1, self.warmup)
        span = max(1, self.total - 1 - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        if self.shape == "linear":
            return self.peak + (self.final - self.peak) * progress
        return self.final + 0.5 * (self.peak - self.final) * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Cosine:
    """Cosine from ``start`` to ``final`` over ``total`` steps (weight decay, as in V-JEPA 1)."""

    start: float
    final: float
    total: int

    def __call__(self, step: int) -> float:
        progress = min(1.0, step / max(1, self.total - 1))
        return self.final + 0.5 * (self.start - self.final) * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Linear:
    """Linear from ``start`` to ``final`` over ``total`` steps (EMA momentum, as in V-JEPA 1)."""

    start: float
    final: float
    total: int

    def __call__(self, step: int) -> float:
        progress = min(1.0, step / max(1, self.total - 1))
        return self.start + (self.final - self.start) * progress


def context_ramp(weight: float, warmup_steps: int, total: int) -> WarmupDecay:
    """V-JEPA 2.1's context-loss weight lambda, ramped as lambda (step + 1) / n over n warm-up steps.

    It starts at lambda / n, never 0, because a weight of 0 switches the term off and its
    statistic would be logged only sometimes."""
    if warmup_steps < 0:
        raise ValueError(f"optim.context_warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps and not weight:
        raise ValueError(
            f"optim.context_warmup_steps={warmup_steps} warms up the context term, "
            "but optim.context_weight is 0 (the term is off): set the weight or drop the warm-up"
        )
    n = max(1, warmup_steps)
    return WarmupDecay(start=weight / n, peak=weight, final=weight, warmup=n - 1, total=total)

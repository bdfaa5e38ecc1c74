"""Gradient-based planning: descend the energy through the (differentiable) world model.

An alternative to CEM when the model is cheap to differentiate: a few parallel starts, each an
action sequence optimised by projected Adam (a step, then a clip back into the bounds). Adam
steps are about `lr` long whatever the energy's scale, so `lr` is given as a fraction of the
action bound and decays to zero on a cosine so that the starts settle instead of orbiting the
minimum. (A tanh reparameterisation was tried first: its flat tails stall Adam near the
bounds.) It needs far fewer model calls than CEM but can stop in a local minimum of the energy,
which the parallel starts partly cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from jepa.world.cem import EnergyFn, PlanResult


@dataclass
class GradientPlannerConfig:
    horizon: int = 2
    num_starts: int = 8
    steps: int = 50
    lr: float = 0.3  # first step size, as a fraction of action_bound
    action_bound: float = 0.05

    def __post_init__(self) -> None:
        if min(self.horizon, self.num_starts, self.steps) < 1:
            raise ValueError(f"horizon, num_starts and steps must be >= 1: {self}")
        if self.lr <= 0 or self.action_bound <= 0:
            raise ValueError(f"lr and action_bound must be positive: {self}")


def gradient_plan(
    energy_fn: EnergyFn,
    action_dim: int,
    config: GradientPlannerConfig,
    init_mean: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> PlanResult:
    """Minimise a differentiable `energy_fn` from `num_starts` starts; return the best one.

    The first start is `init_mean` (zeros when absent), the others are uniform in the bounds.
    """
    c = config
    shape = (c.horizon, action_dim)
    bound = c.action_bound
    actions = (torch.rand((c.num_starts, *shape), generator=generator, device=device) * 2 - 1) * bound
    if init_mean is not None and init_mean.shape != shape:
        raise ValueError(f"init_mean must have shape {shape}, got {tuple(init_mean.shape)}")
    actions[0] = 0.0 if init_mean is None else init_mean.to(device).clamp(-bound, bound)
    actions.requires_grad_(True)
    opt = torch.optim.Adam([actions], lr=c.lr * bound, betas=(0.8, 0.99))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.steps)
    history = []
    best_energy, best_actions = float("inf"), actions[0].detach().clone()
    for step in range(c.steps + 1):  # the last pass only scores the final actions
        energies = energy_fn(actions)
        if energies.shape != (c.num_starts,):
            raise ValueError(f"energy_fn must return ({c.num_starts},), got {tuple(energies.shape)}")
        values = energies.detach()
        i = int(values.argmin())
        if float(values[i]) < best_energy:
            best_energy, best_actions = float(values[i]), actions[i].detach().clone()
        history.append(float(values[i]))
        if step == c.steps:
            break
        opt.zero_grad(set_to_none=True)
        energies.sum().backward()
        opt.step()
        schedule.step()
        with torch.no_grad():
            actions.clamp_(-bound, bound)
    return PlanResult(best_actions, best_energy, best_energy, history)

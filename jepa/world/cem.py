"""Cross-entropy method over action sequences, as the released V-JEPA 2-AC planner does it.

Sample `num_samples` action sequences (horizon, action_dim) from a diagonal Gaussian, clip them
to the action bounds, score them with an energy (lower is better), refit mean and std to the
`num_elites` best, and smooth the refit with momentum: new = (1 - m) * elite + m * old. The
released planner keeps most of the old std (momentum 0.95) so the search stays wide for its
few iterations, and returns the mean, not the best sample, because the mean averages out the
model's noise over the elites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

EnergyFn = Callable[[Tensor], Tensor]  # (K, horizon, action_dim) -> (K,) energies, any K


@dataclass
class CEMConfig:
    horizon: int = 2
    num_samples: int = 400
    num_elites: int = 10
    iterations: int = 10
    action_bound: float = 0.05  # actions are clipped to [-bound, bound] per component
    init_std: float | None = None  # defaults to action_bound
    momentum_mean: float = 0.25
    momentum_std: float = 0.95

    def __post_init__(self) -> None:
        if min(self.horizon, self.num_samples, self.num_elites, self.iterations) < 1:
            raise ValueError(f"horizon, samples, elites and iterations must be >= 1: {self}")
        if self.num_elites > self.num_samples:
            raise ValueError(f"num_elites {self.num_elites} > num_samples {self.num_samples}")
        if self.num_elites < 2:
            raise ValueError("num_elites must be >= 2 to estimate a standard deviation")
        if self.action_bound <= 0:
            raise ValueError(f"action_bound must be positive, got {self.action_bound}")
        for name in ("momentum_mean", "momentum_std"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class PlanResult:
    """What a planner returns (CEM and the gradient planner alike)."""

    actions: Tensor  # (horizon, action_dim): the final mean, what to execute
    energy: float  # energy of the final mean
    best_energy: float  # lowest energy of any sample seen
    energy_history: list[float]  # per iteration: mean elite energy (CEM), energy (gradient)


@torch.no_grad()
def cem_plan(
    energy_fn: EnergyFn,
    action_dim: int,
    config: CEMConfig,
    init_mean: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> PlanResult:
    """Minimise `energy_fn` over (horizon, action_dim) action sequences within the bounds.

    `init_mean` warm-starts the search (for example the previous plan shifted by one step).
    """
    c = config
    shape = (c.horizon, action_dim)
    mean = torch.zeros(shape, device=device) if init_mean is None else init_mean.to(device).clone().float()
    if mean.shape != shape:
        raise ValueError(f"init_mean must have shape {shape}, got {tuple(mean.shape)}")
    std = torch.full(shape, c.action_bound if c.init_std is None else c.init_std, device=device)
    best = float("inf")
    history = []
    for _ in range(c.iterations):
        noise = torch.randn((c.num_samples, *shape), generator=generator, device=device)
        samples = (mean + std * noise).clamp(-c.action_bound, c.action_bound)
        energies = energy_fn(samples)
        if energies.shape != (c.num_samples,):
            raise ValueError(f"energy_fn must return ({c.num_samples},), got {tuple(energies.shape)}")
        elite_energy, idx = energies.topk(c.num_elites, largest=False)
        elites = samples[idx]
        mean = (1 - c.momentum_mean) * elites.mean(0) + c.momentum_mean * mean
        std = (1 - c.momentum_std) * elites.std(0) + c.momentum_std * std
        best = min(best, float(elite_energy[0]))
        history.append(float(elite_energy.mean()))
    mean = mean.clamp(-c.action_bound, c.action_bound)
    final = float(energy_fn(mean.unsqueeze(0))[0])
    return PlanResult(mean, final, best, history)

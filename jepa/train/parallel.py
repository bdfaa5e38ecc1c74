"""How an objective is spread over processes: DDP through accelerate, or FSDP2.

`parallelize` is the one place that picks and applies a strategy; the Trainer then calls the
strategy for everything that differs between the two (gradient sync, clipping, the EMA, the
non-finite check, gathering states for a checkpoint, loading an optimizer state) and never
asks which one it has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from accelerate import Accelerator
from torch import Tensor, nn

from jepa.train import fsdp
from jepa.train.checkpoint import split_prefixed
from jepa.train.ema import ema_update
from jepa.train.objective import Objective

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


class DDPStrategy:
    """One process or DDP through accelerate (which also owns autocast and the grad scaler)."""

    # Each mask config's backward is its own graph; FSDP2's lazy init forbids the target pass
    # before the root forward, so only DDP runs configs one at a time.
    per_config_backward = True

    def __init__(self, accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.accelerator, self.model, self.optimizer = accelerator, model, optimizer
        self.objective: Objective = accelerator.unwrap_model(model)

    def sync_gradients(self, sync: bool) -> contextlib.AbstractContextManager:
        """Gradients are reduced across ranks only in the last backward of a step."""
        return contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model)

    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        return self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm)

    def ema_update(self, momentum: float) -> None:
        for target, source in self.objective.ema_pairs():
            ema_update(target, source, momentum)

    def nonfinite_parameters(self) -> list[str]:
        return [n for n, p in self.objective.named_parameters() if not torch.isfinite(p).all()]

    def model_states(self) -> dict[str, Mapping[str, Tensor]]:
        """The checkpoint modules' state dicts, by prefix (collective under FSDP)."""
        return {name: module.state_dict() for name, module in self.objective.checkpoint_modules().items()}

    def optimizer_state(self) -> dict[str, Any]:
        return self.optimizer.state_dict()


class FSDPStrategy(DDPStrategy):
    """FSDP2 over the objective's transformer blocks (jepa.train.fsdp); accelerate only autocasts."""

    per_config_backward = False

    def __init__(self, accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.accelerator, self.model, self.optimizer, self.objective = accelerator, model, optimizer, model

    def sync_gradients(self, sync: bool) -> contextlib.AbstractContextManager:
        return fsdp.gradient_sync(self.model, sync)

    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        return fsdp.clip_grad_norm_(self.model.parameters(), max_norm)

    def nonfinite_parameters(self) -> list[str]:
        return fsdp.nonfinite_parameters(self.objective)

    def model_states(self) -> dict[str, Mapping[str, Tensor]]:
        # Collective gathers: every rank takes part, rank 0 receives the full tensors.
        full = split_prefixed(fsdp.full_state_dict(self.objective))
        return {name: full.get(name, {}) for name in self.objective.checkpoint_modules()}

    def optimizer_state(self) -> dict[str, Any]:
        return fsdp.full_optimizer_state(self.objective, self.optimizer)


def parallelize(
    objective: Objective,
    accelerator: Accelerator,
    make_optimizer: OptimizerFactory,
    use_fsdp: bool,
    mixed_precision: str,
    optimizer_state: Mapping[str, Any] | None = None,
) -> DDPStrategy:
    """Wrap `objective` for this run's processes and build its optimizer (after sharding, which
    replaces the parameters), loading `optimizer_state` (either checkpoint kind) into it."""
    if use_fsdp:
        model = fsdp.shard_jepa(objective, accelerator.device, mixed_precision)
    else:
        model = objective
    optimizer = make_optimizer(model)
    if optimizer_state is not None:
        fsdp.load_optimizer_state(model, optimizer, optimizer_state)
    if use_fsdp:
        return FSDPStrategy(accelerator, model, optimizer)
    model, optimizer = accelerator.prepare(model, optimizer)
    return DDPStrategy(accelerator, model, optimizer)

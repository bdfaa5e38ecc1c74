"""Fully sharded training (torch FSDP2, ``fully_shard``) of the JEPA module.

Why FSDP2 and not accelerate's plugin: accelerate switches to FSDP only for accelerator
distributed types (GPU, XPU, NPU, ...), never for multi-process CPU, so the plugin could not
be tested on CPU; and the target encoder needs a sharding that mirrors the encoder's, which
is simpler to state directly.

Layout: every transformer ``Block`` (encoder, target encoder, predictor) is one FSDP unit,
then each of the three models, then the JEPA root. The target encoder is sharded exactly like
the encoder (same module tree, same mesh, dim-0 shards), so shard i of a target parameter
holds the same elements as shard i of the matching encoder parameter and the EMA runs on
local shards with no communication.

Checkpoints keep the format of unsharded runs: the full state is gathered to rank 0
(``model.safetensors`` is therefore already a full export) and the optimizer state is stored
keyed by parameter name. Either kind of checkpoint resumes with or without FSDP and at any
world size. The cost is rank-0 host memory of weights + optimizer state at save time (about
17 GB for ViT-g with its target encoder and predictor).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from jepa.models.layers import Block
from jepa.train.ema import local

_PRECISIONS = {"no": None, "bf16": torch.bfloat16}
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def mixed_precision_policy(mixed_precision: str) -> MixedPrecisionPolicy:
    """bf16 compute with fp32 gradient reduction, or full fp32.

    fp16 needs a sharded gradient scaler, which this loop does not have; bf16 does not.
    """
    if mixed_precision not in _PRECISIONS:
        raise ValueError(f"FSDP supports trainer.mixed_precision 'no' or 'bf16', got {mixed_precision!r}")
    dtype = _PRECISIONS[mixed_precision]
    if dtype is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def transformer_blocks(module: nn.Module) -> list[nn.Module]:
    """The attention blocks of a model: the units that are gathered one at a time."""
    return [m for m in module.modules() if isinstance(m, Block)]


def shard_jepa(model: nn.Module, device: torch.device, mixed_precision: str = "no") -> nn.Module:
    """Shard a JEPA module (encoder, predictor, target_encoder) in place over all processes.

    Weights must already be loaded (a fresh init, a resume or an ``init_from``): sharding
    keeps each process's slice of what is there. Needs an initialised process group.
    """
    if not dist.is_initialized():
        raise RuntimeError("FSDP needs torch.distributed to be initialised (launch with torchrun / accelerate / srun)")
    for name in ("encoder", "predictor", "target_encoder"):
        if not isinstance(getattr(model, name, None), nn.Module):
            raise TypeError(f"expected a JEPA module with .{name}, got {type(model).__name__}")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = mixed_precision_policy(mixed_precision)
    for part in (model.encoder, model.target_encoder, model.predictor):
        for block in transformer_blocks(part):
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(part, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """FSDP's ``no_sync``: skip the gradient reduce-scatter on all but the last micro-batch."""
    if not isinstance(model, FSDPModule):
        raise TypeError("gradient_sync needs a module sharded with shard_jepa")
    model.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def clip_grad_norm_(parameters: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Clip by the global norm over all shards; returns that norm as a plain tensor."""
    norm = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def nonfinite_parameters(model: nn.Module) -> list[str]:
    """Names of parameters with a NaN/inf on any process (collective: every rank must call)."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(local(p)).all()]
    device = next(local(p) for p in model.parameters()).device
    count = torch.tensor([len(bad)], device=device)
    dist.all_reduce(count)
    if count.item() and not bad:
        return [f"<{int(count.item())} parameter shard(s) on other ranks>"]
    return bad


def full_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """All weights, unsharded, on CPU in rank 0 (collective; {} on other ranks)."""
    return get_model_state_dict(model, options=_FULL)


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state, unsharded and keyed by parameter name, on rank 0 (collective)."""
    return get_optimizer_state_dict(model, optimizer, options=_FULL)


def is_named_optimizer_state(state: Mapping[str, Any]) -> bool:
    """Whether an optimizer state dict is keyed by parameter names (written under FSDP)."""
    groups = state.get("param_groups", [])
    return any(isinstance(p, str) for g in groups for p in g.get("params", []))


def named_optimizer_state(
    state: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Re-key a plain ``optimizer.state_dict()`` (integer ids) by parameter name.

    Ids number the parameters of ``optimizer.param_groups`` in order; the optimizer passed
    here must be built from the same groups as the one that wrote ``state``.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    saved_count = sum(len(g["params"]) for g in state["param_groups"])
    if saved_count != len(order):
        raise ValueError(f"optimizer state has {saved_count} parameters, this optimizer has {len(order)}")
    return {
        "state": {order[int(i)]: v for i, v in state["state"].items()},
        "param_groups": [{**g, "params": [order[int(i)] for i in g["params"]]} for g in state["param_groups"]],
    }


def check_optimizer_groups(saved: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Refuse a saved optimizer state whose groups differ from this run's.

    Loading such a state fails in torch with a bare group-count error, or, when only a group's
    ``lr_scale`` differs, succeeds and silently keeps the saved scale; both come from resuming
    with another ``optim.predictor_lr_scale``.
    """

    def layout(groups: Any) -> list[tuple[Any, Any, int]]:
        return [(g.get("apply_wd"), g.get("lr_scale"), len(g["params"])) for g in groups]

    own, then = layout(optimizer.param_groups), layout(saved["param_groups"])
    # A key a saved group lacks (a state written by other code) is left unchecked.
    fits = len(own) == len(then) and all(
        all(s is None or s == o for s, o in zip(saved_g, own_g)) for saved_g, own_g in zip(then, own)
    )
    if not fits:
        raise ValueError(
            "the checkpoint's optimizer groups (apply_wd, lr_scale, size) differ from this run's: "
            f"saved {then}, now {own}. Resume with the optim.predictor_lr_scale it was trained "
            "with, or start a new run_dir (trainer.init_from keeps the weights, fresh optimizer)."
        )


# Options that say how a step is computed, not what the state is: kept from this run's optimizer
# on resume (torch's load_state_dict would take the saved ones, e.g. an older run's unfused AdamW).
_KERNEL_OPTIONS = ("fused", "foreach")


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Load a saved optimizer state of either kind into a sharded or unsharded model's optimizer."""
    check_optimizer_groups(state, optimizer)
    state = {
        **state,
        "param_groups": [
            {**saved, **{k: own[k] for k in _KERNEL_OPTIONS if k in own}}
            for saved, own in zip(state["param_groups"], optimizer.param_groups)
        ],
    }
    if not is_sharded(model) and not is_named_optimizer_state(state):
        optimizer.load_state_dict(dict(state))
        return
    if not is_named_optimizer_state(state):
        state = named_optimizer_state(state, model, optimizer)
    names = {id(p): n for n, p in model.named_parameters()}
    own = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    saved = [n for g in state["param_groups"] for n in g["params"]]
    if sorted(own) != sorted(saved):
        missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
        raise ValueError(f"optimizer state does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    # Parameters that never had a gradient (the unused mask tokens) have no state, as in a
    # plain optimizer.state_dict(); the name check above is the strict part.
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_optimizer_state_dict(model, optimizer, dict(state), options=options)

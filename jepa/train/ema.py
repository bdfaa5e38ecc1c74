"""Exponential moving average of the context encoder into the target encoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor


def local(t: Tensor) -> Tensor:
    """This process's shard of a parameter (the tensor itself when it is not sharded)."""
    return t.to_local() if isinstance(t, DTensor) else t


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * source`` on every parameter.

    Uses fused ``_foreach`` kernels (one launch per dtype/device group instead of one per
    tensor). Buffers are copied, not averaged: they are fixed tables (sin-cos positions).
    Under FSDP it runs on local shards with no communication, which is right because the
    target is sharded exactly like the source; every local shape is compared to make sure.
    """
    t_params = [local(p) for p in target.parameters()]
    s_params = [local(p.detach()) for p in source.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError(
            f"target has {len(t_params)} parameters but source has {len(s_params)}: not the same architecture"
        )
    for i, (a, b) in enumerate(zip(t_params, s_params)):
        if a.shape != b.shape:
            raise ValueError(f"parameter {i}: target shard {tuple(a.shape)} != source shard {tuple(b.shape)}")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
    for tb, sb in zip(target.buffers(), source.buffers()):
        tb.copy_(sb)

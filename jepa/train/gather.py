"""A differentiable all-gather, so batch statistics can span every rank's clips.

The variance/covariance terms (`jepa.train.step.variance_covariance`) are statistics of a
batch. Computed on each rank's share alone they depend on how the global batch is split, so
2 ranks x batch 4 would train differently from 1 x batch 8; gathered first (as VICReg does),
every rank sees the global batch and the run equals one process at that batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


class _GatherRanks(torch.autograd.Function):
    """Forward: concatenate every rank's tensor along dim 0. Backward: its adjoint.

    Each rank computes its loss from the same gathered tensor, so the gradient of rank r's share
    is the sum over ranks of the gradients with respect to that slice (an all-reduce, which
    every backend has: gloo lacks reduce-scatter). DDP then averages parameter gradients over
    the ranks (FSDP's reduce-scatter does the same), which gives the one-process gradient.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]  # type: ignore[attr-defined]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = ctx.rank * ctx.rows  # type: ignore[attr-defined]
        return grad[start : start + ctx.rows]  # type: ignore[attr-defined]


def gather_ranks(x: Tensor) -> Tensor:
    """Every rank's `x` concatenated along dim 0 in rank order, with gradients; `x` in one process.

    Every rank must call it at the same point with the same shape (the loop draws one set of
    masks for the global batch, so context sizes agree across ranks).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherRanks.apply(x)

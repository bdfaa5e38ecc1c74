"""Weight initialisation as in the released V-JEPA models, shared by all of them.

Truncated normal (std 0.02, cut at +-2 absolute) for Linear/Conv weights, zero biases,
LayerNorm 1/0; then the residual-branch outputs (attention `proj`, MLP `fc2`) of block i
are divided by sqrt(2 * (i + 1)) so deep stacks start with a bounded residual stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def init_weights_(module: nn.Module, std: float = 0.02) -> None:
    """Initialise every Linear, Conv and LayerNorm inside `module` in place."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@torch.no_grad()
def rescale_blocks_(blocks: Iterable[nn.Module]) -> None:
    """Divide attn.proj and mlp.fc2 weights of block i by sqrt(2 * (i + 1))."""
    for i, blk in enumerate(blocks):
        scale = math.sqrt(2.0 * (i + 1))
        blk.attn.proj.weight.div_(scale)
        blk.mlp.fc2.weight.div_(scale)


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth growing linearly from 0 at the first block to `rate` at the last."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {rate}")
    if depth <= 1:
        return [0.0] * depth
    return [rate * i / (depth - 1) for i in range(depth)]

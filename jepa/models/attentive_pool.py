"""Attentive pooler for frozen-feature probes (V-JEPA 2 layout).

`depth` self-attention blocks refine all encoder tokens, then learned query tokens read
them through one cross-attention block. The released V-JEPA 2 probe uses depth 3, 16
heads and one query (its config calls this `num_probe_blocks: 4`, counting the cross
block). Names (query_tokens, blocks.N, cross_attention_block) follow the released probe.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from jepa.models.init import init_weights_, rescale_blocks_
from jepa.models.layers import Block, CrossBlock, run_blocks


class AttentivePooler(nn.Module):
    """Tokens (B, N, dim) -> pooled queries (B, num_queries, dim)."""

    def __init__(
        self,
        dim: int,
        num_queries: int = 1,
        num_heads: int = 16,
        depth: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_std: float = 0.02,
        use_activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if num_queries < 1 or depth < 0:
            raise ValueError(f"need num_queries >= 1 and depth >= 0, got {num_queries}, {depth}")
        self.dim = dim
        self.use_activation_checkpointing = use_activation_checkpointing
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.cross_attention_block = CrossBlock(dim, num_heads, mlp_ratio, qkv_bias)

        nn.init.trunc_normal_(self.query_tokens, std=init_std)
        init_weights_(self, init_std)
        rescale_blocks_(self.blocks)
        # The released pooler scales the cross block's fc2 like its last self-attention block.
        with torch.no_grad():
            self.cross_attention_block.mlp.fc2.weight.div_(math.sqrt(2.0 * max(depth, 1)))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected tokens (B, N, {self.dim}), got {tuple(x.shape)}")
        x = run_blocks(self.blocks, x, self.use_activation_checkpointing)
        q = self.query_tokens.expand(x.shape[0], -1, -1)
        return self.cross_attention_block(q, x)

"""JEPA predictor: from context tokens, predict the encoder's tokens at target positions.

Context tokens are projected to the predictor width, one learned mask token is placed at
every target position, and a narrow transformer runs over both. Positions are the token
indices of the (T', H', W') grid: 3D RoPE in attention (V-JEPA 2) or a fixed sin-cos
table added to the tokens (V-JEPA 1, `predictor_pos_embed`). As released, tokens are
sorted by position before the blocks and restored after; attention is permutation
equivariant, so this only fixes the order of floating-point work.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from jepa.masks.multiblock import token_grid
from jepa.masks.ops import check_indices, gather_tokens
from jepa.models.args import PredictorArgs
from jepa.models.init import drop_path_rates, init_weights_, rescale_blocks_
from jepa.models.layers import NORM_EPS, Block, run_blocks
from jepa.models.pos_embed import interpolate_pos_embed, sincos_3d
from jepa.models.rope import index_to_position, shared_tables
from jepa.models.vit import Grid


class VisionTransformerPredictor(nn.Module):
    """forward(ctx, ctx_idx, tgt_idx, mask_index=0, grid=None) -> (B, K_tgt, embed_dim).

    Built from `PredictorArgs` (keyword arguments replace its fields); `self.config` is the
    args as a dict.

    With `return_context=True` it also returns its outputs at the context positions (B, K_ctx,
    embed_dim), for V-JEPA 2.1's loss on the context tokens.
    """

    def __init__(self, args: PredictorArgs | None = None, **changes: Any) -> None:
        super().__init__()
        a = self.args = (args or PredictorArgs()).replace(**changes)
        self.config: dict[str, Any] = a.as_dict()
        self.grid = token_grid(a.num_frames, a.img_size, a.patch_size, a.tubelet_size)
        self.embed_dim, self.predictor_embed_dim, self.num_heads = a.embed_dim, a.predictor_embed_dim, a.num_heads
        self.num_mask_tokens = a.num_mask_tokens
        self.pos_embed_type = a.pos_embed
        self.use_activation_checkpointing = a.use_activation_checkpointing

        width = a.predictor_embed_dim
        self.predictor_embed = nn.Linear(a.embed_dim, width)
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, width)) for _ in range(a.num_mask_tokens))
        self.predictor_pos_embed: Tensor | None
        if a.pos_embed == "sincos":
            self.register_buffer("predictor_pos_embed", sincos_3d(width, self.grid).unsqueeze(0))
        else:
            self.predictor_pos_embed = None
        layout = a.rope_layout if a.pos_embed == "rope" else None
        self.predictor_blocks = nn.ModuleList(
            Block(width, a.num_heads, a.mlp_ratio, a.qkv_bias, drop_path=dp, rope_layout=layout)
            for dp in drop_path_rates(a.drop_path_rate, a.depth)
        )
        self.predictor_norm = nn.LayerNorm(width, eps=NORM_EPS)
        self.predictor_proj = nn.Linear(width, a.embed_dim)

        init_weights_(self, a.init_std)
        rescale_blocks_(self.predictor_blocks)
        if not a.zero_init_mask_tokens:
            for token in self.mask_tokens:
                nn.init.trunc_normal_(token, std=a.init_std)

    def _check_inputs(self, ctx: Tensor, ctx_idx: Tensor, tgt_idx: Tensor, grid: Grid) -> None:
        if ctx.ndim != 3 or ctx.shape[-1] != self.embed_dim:
            raise ValueError(f"context must have shape (B, K, {self.embed_dim}), got {tuple(ctx.shape)}")
        if len(grid) != 3 or any(int(g) <= 0 for g in grid):
            raise ValueError(f"grid must be three positive ints (T', H', W'), got {grid}")
        n = grid[0] * grid[1] * grid[2]
        check_indices(ctx_idx, n)
        check_indices(tgt_idx, n)
        if tuple(ctx_idx.shape) != tuple(ctx.shape[:2]):
            raise ValueError(f"ctx_idx shape {tuple(ctx_idx.shape)} must equal context shape {tuple(ctx.shape[:2])}")
        if tgt_idx.shape[0] != ctx.shape[0]:
            raise ValueError(f"batch size mismatch: context {ctx.shape[0]}, tgt_idx {tgt_idx.shape[0]}")

    def forward(
        self,
        ctx: Tensor,
        ctx_idx: Tensor,
        tgt_idx: Tensor,
        mask_index: int = 0,
        grid: tuple[int, int, int] | None = None,
        return_context: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """ctx (B, Kc, D) encoder tokens at ctx_idx (B, Kc); returns predictions (B, Kt, D) at tgt_idx.

        `mask_index` picks mask_tokens[mask_index % num_mask_tokens]; `grid` is the token
        grid of the clip (defaults to the construction grid).
        """
        grid = self.grid if grid is None else tuple(int(g) for g in grid)
        self._check_inputs(ctx, ctx_idx, tgt_idx, grid)
        b, kc, _ = ctx.shape
        ctx_idx = ctx_idx.to(device=ctx.device, dtype=torch.long)
        tgt_idx = tgt_idx.to(device=ctx.device, dtype=torch.long)

        x = self.predictor_embed(ctx)
        tgt = self.mask_tokens[mask_index % self.num_mask_tokens].to(x.dtype).expand(b, tgt_idx.shape[1], -1)
        if self.predictor_pos_embed is not None:
            table = interpolate_pos_embed(self.predictor_pos_embed, self.grid, grid).to(x.dtype).expand(b, -1, -1)
            x = x + gather_tokens(table, ctx_idx)
            tgt = tgt + gather_tokens(table, tgt_idx)
        x = torch.cat((x, tgt), dim=1)
        idx = torch.cat((ctx_idx, tgt_idx), dim=1)

        order = torch.argsort(idx, dim=1, stable=True)
        x = gather_tokens(x, order)
        pos = None
        if self.predictor_pos_embed is None:
            pos = index_to_position(torch.gather(idx, 1, order), grid)
            pos = shared_tables(self.predictor_blocks[0].attn.rope, pos, x)
        x = run_blocks(self.predictor_blocks, x, self.use_activation_checkpointing, pos=pos)
        x = self.predictor_norm(x)
        restore = torch.argsort(order, dim=1)
        if return_context:
            out = self.predictor_proj(gather_tokens(x, restore))
            return out[:, kc:], out[:, :kc]
        return self.predictor_proj(gather_tokens(x, restore[:, kc:]))

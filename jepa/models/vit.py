"""Video Vision Transformer encoder (V-JEPA / V-JEPA 2 layout).

Clips (B, C, T, H, W) become tubelet tokens in t-major order (index = t*H'*W' + h*W' + w);
images (B, C, H, W) or T == 1 clips are repeated to one tubelet. Positions are either 3D
RoPE inside attention (V-JEPA 2) or a fixed sin-cos table added to the tokens (V-JEPA 1).
Parameter names match the official checkpoints: patch_embed.proj, blocks.N.*, norm and,
for sin-cos, the `pos_embed` buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from jepa.masks.multiblock import token_grid
from jepa.masks.ops import gather_tokens
from jepa.models.args import EncoderArgs
from jepa.models.init import drop_path_rates, init_weights_, rescale_blocks_
from jepa.models.layers import NORM_EPS, Block, PatchEmbed3D, run_blocks
from jepa.models.pos_embed import interpolate_pos_embed, sincos_3d
from jepa.models.rope import RopeTables, grid_positions, index_to_position, shared_tables

Grid = tuple[int, int, int]


class VisionTransformer(nn.Module):
    """ViT encoder: forward(x, masks=None) -> (B, N or K, D) tokens after the final norm.

    Built from `EncoderArgs` (keyword arguments replace its fields: `VisionTransformer(depth=4)`);
    `self.config` is the args as a dict, which checkpoints store to rebuild it.
    """

    def __init__(self, args: EncoderArgs | None = None, **changes: Any) -> None:
        super().__init__()
        a = self.args = (args or EncoderArgs()).replace(**changes)
        self.config: dict[str, Any] = a.as_dict()
        self.img_size = a.img_size
        self.grid = token_grid(a.num_frames, a.img_size, a.patch_size, a.tubelet_size)
        self.patch_size, self.num_frames, self.tubelet_size = a.patch_size, a.num_frames, a.tubelet_size
        self.in_chans, self.embed_dim, self.num_heads, self.depth = a.in_chans, a.embed_dim, a.num_heads, a.depth
        self.pos_embed_type = a.pos_embed
        self.use_activation_checkpointing = a.use_activation_checkpointing

        self.patch_embed = PatchEmbed3D(a.in_chans, a.embed_dim, a.patch_size, a.tubelet_size)
        self.pos_embed: Tensor | None
        if a.pos_embed == "sincos":
            # Fixed, never trained; persistent so it is saved like the official `pos_embed`.
            self.register_buffer("pos_embed", sincos_3d(a.embed_dim, self.grid).unsqueeze(0))
        else:
            self.pos_embed = None
        layout = a.rope_layout if a.pos_embed == "rope" else None
        self.blocks = nn.ModuleList(
            Block(
                a.embed_dim, a.num_heads, a.mlp_ratio, a.qkv_bias, drop_path=dp, rope_layout=layout, qk_norm=a.qk_norm
            )
            for dp in drop_path_rates(a.drop_path_rate, a.depth)
        )
        self.norm = nn.LayerNorm(a.embed_dim, eps=NORM_EPS)
        init_weights_(self, a.init_std)
        rescale_blocks_(self.blocks)

    @property
    def num_patches(self) -> int:
        """Tokens per clip at the construction size."""
        t, h, w = self.grid
        return t * h * w

    def grid_size(self, num_frames: int, height: int, width: int) -> Grid:
        """Token grid (T', H', W') of an input of this size; ValueError if it does not tile."""
        return token_grid(num_frames, (height, width), self.patch_size, self.tubelet_size)

    def _as_clip(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.ndim != 5:
            raise ValueError(f"expected a clip (B, C, T, H, W) or image (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"expected {self.in_chans} channels in dim 1, got shape {tuple(x.shape)}")
        if x.shape[2] == 1 and self.tubelet_size > 1:
            x = x.repeat(1, 1, self.tubelet_size, 1, 1)
        return x

    def check_out_layers(self, out_layers: Sequence[int]) -> tuple[int, ...]:
        """Validated block numbers (1 = after the first block, depth = the usual output)."""
        layers = tuple(int(k) for k in out_layers)
        if not layers or any(not 1 <= k <= self.depth for k in layers):
            raise ValueError(
                f"out_layers must be a non-empty list of block numbers in 1..{self.depth}, got {list(out_layers)}"
            )
        return layers

    def forward(self, x: Tensor, masks: Tensor | None = None, out_layers: Sequence[int] | None = None) -> Tensor:
        """x: (B, C, T, H, W) or (B, C, H, W); masks: (B, K) indices of tokens to keep.

        `out_layers` (block numbers, 1..depth) returns the outputs of those blocks, each through
        the final norm, concatenated on the channel axis (B, N, dim * len(out_layers)), for
        probes and embeddings that read intermediate layers; None is the last block's output.
        """
        x = self._as_clip(x)
        grid = self.grid_size(*x.shape[2:])
        tokens = self.patch_embed(x)
        if self.pos_embed is not None:
            tokens = tokens + interpolate_pos_embed(self.pos_embed, self.grid, grid).to(tokens.dtype)
        pos: Tensor | RopeTables | None = None
        if masks is not None:
            tokens = gather_tokens(tokens, masks)
            if self.pos_embed is None:
                pos = index_to_position(masks.to(tokens.device), grid)
        elif self.pos_embed is None:
            pos = grid_positions(grid, device=tokens.device)
        pos = shared_tables(self.blocks[0].attn.rope, pos, tokens)
        if out_layers is None:
            return self.norm(run_blocks(self.blocks, tokens, self.use_activation_checkpointing, pos=pos))
        layers, outputs, done = self.check_out_layers(out_layers), {}, 0
        for k in sorted(set(layers)):
            tokens = run_blocks(self.blocks[done:k], tokens, self.use_activation_checkpointing, pos=pos)
            outputs[k], done = self.norm(tokens), k
        return torch.cat([outputs[k] for k in layers], dim=-1)

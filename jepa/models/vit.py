"""Video Vision Transformer encoder (V-JEPA / V-JEPA 2 layout).

Clips (B, C, T, H, W) become tubelet tokens in t-major order (index = t*H'*W' + h*W' + w);
images (B, C, H, W) or T == 1 clips are repeated to one tubelet. Positions are either 3D
RoPE inside attention (V-JEPA 2) or a fixed sin-cos table added to the tokens (V-JEPA 1).
Parameter names match the official checkpoints: patch_embed.proj, blocks.N.*, norm and,
for sin-cos, the `pos_embed` buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from jepa.masks.multiblock import token_grid
from jepa.masks.ops import gather_tokens
from jepa.models.init import drop_path_rates, init_weights_, rescale_blocks_
from jepa.models.layers import NORM_EPS, Block, PatchEmbed3D, run_blocks
from jepa.models.pos_embed import interpolate_pos_embed, sincos_3d
from jepa.models.rope import ROPE_LAYOUTS, RopeTables, grid_positions, index_to_position, shared_tables

PosEmbedType = Literal["rope", "sincos"]
POS_EMBED_TYPES: tuple[str, ...] = ("rope", "sincos")
Grid = tuple[int, int, int]


def as_hw(img_size: int | tuple[int, int]) -> tuple[int, int]:
    """Normalise an int or (H, W) image size to (H, W)."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    return int(h), int(w)


def build_grid(img_size: tuple[int, int], patch_size: int, num_frames: int, tubelet_size: int) -> Grid:
    """Token grid (T', H', W') a model is built for (`jepa.masks.multiblock.token_grid`)."""
    return token_grid(num_frames, img_size, patch_size, tubelet_size)


def check_pos_embed_args(pos_embed: str, rope_layout: str) -> None:
    if pos_embed not in POS_EMBED_TYPES:
        raise ValueError(f"pos_embed must be one of {POS_EMBED_TYPES}, got {pos_embed!r}")
    if pos_embed == "rope" and rope_layout not in ROPE_LAYOUTS:
        raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}, got {rope_layout!r}")


class VisionTransformer(nn.Module):
    """ViT encoder: forward(x, masks=None) -> (B, N or K, D) tokens after the final norm."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        pos_embed: PosEmbedType = "rope",
        rope_layout: str = "released",
        use_activation_checkpointing: bool = False,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        check_pos_embed_args(pos_embed, rope_layout)
        if depth < 1 or in_chans < 1:
            raise ValueError(f"depth and in_chans must be >= 1, got {depth}, {in_chans}")
        self.img_size = as_hw(img_size)
        self.grid = build_grid(self.img_size, patch_size, num_frames, tubelet_size)
        self.config: dict[str, Any] = dict(
            img_size=self.img_size,
            patch_size=patch_size,
            num_frames=num_frames,
            tubelet_size=tubelet_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            pos_embed=pos_embed,
            rope_layout=rope_layout,
            use_activation_checkpointing=use_activation_checkpointing,
            init_std=init_std,
        )
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.depth = depth
        self.pos_embed_type = pos_embed
        self.use_activation_checkpointing = use_activation_checkpointing

        self.patch_embed = PatchEmbed3D(in_chans, embed_dim, patch_size, tubelet_size)
        self.pos_embed: Tensor | None
        if pos_embed == "sincos":
            # Fixed, never trained; persistent so it is saved like the official `pos_embed`.
            self.register_buffer("pos_embed", sincos_3d(embed_dim, self.grid).unsqueeze(0))
        else:
            self.pos_embed = None
        layout = rope_layout if pos_embed == "rope" else None
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_path=dp, rope_layout=layout)
            for dp in drop_path_rates(drop_path_rate, depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=NORM_EPS)
        init_weights_(self, init_std)
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

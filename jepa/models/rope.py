"""3D rotary position embedding over (frame, row, column) token positions.

The head dimension is split into three equal even parts of size
d = 2 * ((head_dim // 3) // 2), one per axis; the remaining channels are left as they
are. Within an axis part, channel pairs (2i, 2i + 1) are rotated by angles built from the
frequencies f_i = 1 / theta ** (i / (d / 2)), i < d / 2.

Two layouts of the per-channel angle table exist:

- "released": the table is [f_0 .. f_{d/2-1}, f_0 .. f_{d/2-1}] (repeated, not
  interleaved), so channels 2i and 2i + 1 of a pair get *different* frequencies. This is
  what the released V-JEPA 2 weights were trained with (and what HF `VJEPA2Model` ports);
  it is neither norm-preserving nor purely relative, but loading those weights needs it.
- "interleaved": the table is [f_0, f_0, f_1, f_1, ...], a true rotation per pair, so
  q . k depends only on the position difference. Use it for new models.

Angles come from the positions of each call, so any grid (other resolutions, frame
counts, masked subsets) works. Every layer of a model rotates by the same positions, so a
model may compute the cos/sin tables once per forward (`RoPE3D.tables`) and pass them in
place of the positions: the result is bit-identical and each layer skips the trigonometry.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

RopeLayout = Literal["released", "interleaved"]
ROPE_LAYOUTS: tuple[str, ...] = ("released", "interleaved")


def index_to_position(idx: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """Token indices (any shape) of a t-major (T, H, W) grid -> float (..., 3) (frame, row, col)."""
    _, h, w = grid
    idx = idx.long()
    frame = idx // (h * w)
    rem = idx - frame * (h * w)
    row = rem // w
    col = rem - row * w
    return torch.stack((frame, row, col), dim=-1).float()


def grid_positions(grid: tuple[int, int, int], device: torch.device | None = None) -> Tensor:
    """(T*H*W, 3) positions of every token of a grid, in t-major order."""
    n = grid[0] * grid[1] * grid[2]
    return index_to_position(torch.arange(n, device=device), grid)


class RopeTables(NamedTuple):
    """Per-channel tables over the whole head dim, broadcastable to (B, H, N, head_dim).

    `sin` carries the sign of the pair rotation (-sin on channel 2i, +sin on 2i + 1) and
    the unrotated remainder channels have cos 1 and sin 0, so applying is one fused
    `x * cos + pair_swap(x) * sin`, with no slicing or concatenation per call.
    """

    cos: Tensor
    sin: Tensor


class RoPE3D:
    """Rotates queries/keys (B, H, N, head_dim) by their 3D token positions.

    A plain object, not an nn.Module: it has no parameters or buffers, so it never enters a
    state dict and survives meta-device construction unchanged.
    """

    def __init__(self, head_dim: int, layout: RopeLayout = "released", theta: float = 10000.0) -> None:
        if layout not in ROPE_LAYOUTS:
            raise ValueError(f"rope layout must be one of {ROPE_LAYOUTS}, got {layout!r}")
        axis_dim = 2 * ((head_dim // 3) // 2)
        if axis_dim == 0:
            raise ValueError(f"3D RoPE needs head_dim >= 6, got {head_dim}")
        if theta <= 0:
            raise ValueError(f"rope theta must be positive, got {theta}")
        self.head_dim = head_dim
        self.layout = layout
        self.theta = float(theta)
        self.axis_dim = axis_dim
        self.rotated_dim = 3 * axis_dim

    def __repr__(self) -> str:
        return f"RoPE3D(head_dim={self.head_dim}, axis_dim={self.axis_dim}, layout={self.layout}, theta={self.theta})"

    def frequencies(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """(d/2,) frequencies, computed in the same op order as the released code."""
        half = self.axis_dim // 2
        omega = torch.arange(half, dtype=dtype, device=device) / (half * 1.0)
        return 1.0 / self.theta**omega

    def angles(self, pos: Tensor, axis_mask: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Per-channel angles (..., N, 3 * d) for positions (..., N, 3), in float32 (or float64).

        A False entry of `axis_mask` zeroes that axis' position, i.e. leaves those channels
        unrotated for that token (conditioning tokens of the action predictor use this).
        """
        if pos.shape[-1] != 3 or pos.ndim not in (2, 3):
            raise ValueError(f"rope positions must have shape (N, 3) or (B, N, 3), got {tuple(pos.shape)}")
        pos = pos.to(dtype)
        if axis_mask is not None:
            if axis_mask.shape[-1] != 3:
                raise ValueError(f"axis_mask must end in 3 (frame, row, col), got {tuple(axis_mask.shape)}")
            pos = pos * axis_mask.to(device=pos.device, dtype=pos.dtype)
        freq = pos.unsqueeze(-1) * self.frequencies(pos.device, dtype)  # (..., N, 3, d/2)
        if self.layout == "released":
            table = torch.cat((freq, freq), dim=-1)
        else:
            table = freq.repeat_interleave(2, dim=-1)
        return table.flatten(-2)

    def tables(self, pos: Tensor, axis_mask: Tensor | None = None, dtype: torch.dtype = torch.float32) -> RopeTables:
        """cos / signed-sin tables for positions (N, 3) or (B, N, 3); see `RopeTables`. Even head_dim only."""
        if self.head_dim % 2:
            raise ValueError(f"rope tables need an even head_dim, got {self.head_dim}")
        theta = self.angles(pos, axis_mask, dtype)
        cos = theta.cos()
        sign = torch.tensor([-1.0, 1.0], dtype=dtype, device=theta.device)  # -sin on channel 2i, +sin on 2i + 1
        sin = (theta.sin().unflatten(-1, (-1, 2)) * sign).flatten(-2)
        rest = self.head_dim - self.rotated_dim
        if rest:
            cos = torch.cat((cos, cos.new_ones(*cos.shape[:-1], rest)), dim=-1)
            sin = torch.cat((sin, sin.new_zeros(*sin.shape[:-1], rest)), dim=-1)
        if pos.ndim == 3:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, N, head_dim): broadcast over heads
        return RopeTables(cos, sin)

    def apply(self, x: Tensor, pos: Tensor | RopeTables, axis_mask: Tensor | None = None) -> Tensor:
        """Rotate x (B, H, N, head_dim) (any leading dims before H) by positions (N, 3) or
        (B, N, 3), or by tables from `tables()` (which already include any axis mask)."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"expected head_dim {self.head_dim}, got {x.shape[-1]}")
        if isinstance(pos, RopeTables):
            if axis_mask is not None:
                raise ValueError("precomputed rope tables already include the axis mask; pass it to tables()")
            if pos.cos.shape[-2] != x.shape[-2] or pos.cos.shape[-1] != self.head_dim:
                raise ValueError(f"rope tables of shape {tuple(pos.cos.shape)} do not fit input {tuple(x.shape)}")
            tables = pos
        else:
            if pos.shape[-2] != x.shape[-2]:
                raise ValueError(f"got {pos.shape[-2]} positions for {x.shape[-2]} tokens")
            if self.head_dim % 2:
                return self._apply_sliced(x, pos, axis_mask)
            # Angles in float32 even under bf16 autocast (float64 for float64 inputs).
            tables = self.tables(pos, axis_mask, torch.float64 if x.dtype == torch.float64 else torch.float32)
        swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
        return x * tables.cos.to(x.dtype) + swapped * tables.sin.to(x.dtype)

    def _apply_sliced(self, x: Tensor, pos: Tensor, axis_mask: Tensor | None) -> Tensor:
        """Odd head dims cannot be paired whole: rotate the first 3 * d channels, keep the rest."""
        theta = self.angles(pos, axis_mask, torch.float64 if x.dtype == torch.float64 else torch.float32)
        if theta.ndim == 3:
            theta = theta.unsqueeze(1)  # (B, 1, N, 3d): broadcast over heads
        cos, sin = theta.cos().to(x.dtype), theta.sin().to(x.dtype)
        rot, rest = x[..., : self.rotated_dim], x[..., self.rotated_dim :]
        pairs = rot.unflatten(-1, (-1, 2))
        swapped = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return torch.cat((rot * cos + swapped * sin, rest), dim=-1)

    __call__ = apply


def shared_tables(rope: RoPE3D | None, pos: Tensor | None, like: Tensor) -> Tensor | RopeTables | None:
    """cos/sin tables computed once for a stack of blocks that all rotate by ``pos``.

    Same numbers as rotating inside each block, but one table per forward instead of two per
    block. Falls back to the raw positions where tables do not apply (no RoPE, odd head dim).
    """
    if pos is None or rope is None or rope.head_dim % 2:
        return pos
    return rope.tables(pos, dtype=torch.float64 if like.dtype == torch.float64 else torch.float32)

"""Fixed 3D sin-cos position tables (V-JEPA 1) and their resizing to other grids.

With the "uniform power" split each of the (frame, row, column) axes gets the same
number of channels, 2 * ceil(D / 6), laid out [frame | row | column] and cut to D; each
axis block is [sin(p * w_i) .. , cos(p * w_i) ..] with w_i = 1 / 10000 ** (i / (d / 2)).
Without it (older V-JEPA 1 code) frames get D/2 channels and rows/columns D/4 each.
Tables are computed in float64 and returned as float32, like the released code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from jepa.models.rope import grid_positions


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """(M,) positions -> (M, dim) table [sin(pos * w), cos(pos * w)] in float64."""
    if dim <= 0 or dim % 2:
        raise ValueError(f"sin-cos dimension must be positive and even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat((out.sin(), out.cos()), dim=1)


def sincos_3d(embed_dim: int, grid: tuple[int, int, int], uniform_power: bool = True) -> Tensor:
    """(T*H*W, embed_dim) float32 table for a t-major (T, H, W) token grid."""
    if any(g <= 0 for g in grid):
        raise ValueError(f"grid sizes must be positive, got {grid}")
    if uniform_power:
        dims = (int(math.ceil(embed_dim / 6) * 2),) * 3
    else:
        if embed_dim % 8:
            raise ValueError(f"non-uniform sin-cos split needs embed_dim divisible by 8, got {embed_dim}")
        dims = (embed_dim // 2, embed_dim // 4, embed_dim // 4)
    pos = grid_positions(grid).double()
    table = torch.cat([sincos_1d(d, pos[:, axis]) for axis, d in enumerate(dims)], dim=1)
    return table[:, :embed_dim].float()


def interpolate_pos_embed(table: Tensor, from_grid: tuple[int, int, int], to_grid: tuple[int, int, int]) -> Tensor:
    """Resize a (1, T*H*W, D) table built for `from_grid` to `to_grid`.

    Same spatial size with fewer frames keeps the first frames (their positions are
    unchanged); anything else is trilinear interpolation, as the released V-JEPA 1 does.
    """
    if table.ndim != 3 or table.shape[0] != 1:
        raise ValueError(f"position table must have shape (1, N, D), got {tuple(table.shape)}")
    t0, h0, w0 = from_grid
    if table.shape[1] != t0 * h0 * w0:
        raise ValueError(f"table has {table.shape[1]} rows but grid {from_grid} has {t0 * h0 * w0}")
    if tuple(to_grid) == tuple(from_grid):
        return table
    t1, h1, w1 = to_grid
    if (h1, w1) == (h0, w0) and t1 < t0:
        return table[:, : t1 * h1 * w1]
    dim = table.shape[-1]
    vol = table.reshape(1, t0, h0, w0, dim).permute(0, 4, 1, 2, 3)
    vol = F.interpolate(vol.float(), size=(t1, h1, w1), mode="trilinear", align_corners=False)
    return vol.to(table.dtype).permute(0, 2, 3, 4, 1).reshape(1, t1 * h1 * w1, dim)

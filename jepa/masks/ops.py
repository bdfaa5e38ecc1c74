"""Index operations on token sequences: the one place masks touch tensors.

Masks are int64 index tensors (B, K) of kept token positions in t-major order;
everything that selects tokens by such indices goes through `gather_tokens` so
that bounds are checked once, with a readable error instead of a CUDA assert.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_indices(idx: Tensor, n: int) -> None:
    """Raise ValueError unless `idx` is an integer (B, K) tensor with values in [0, n).

    The value check reads the values on the host, so it runs for CPU tensors only: a GPU step
    must not wait on a device-to-host copy (MaskSampler's indices are in range by construction,
    and CUDA's gather still stops on an out-of-range index, with a device assert). It is also
    skipped while torch.compile traces.
    """
    if not isinstance(idx, Tensor):
        raise ValueError(f"mask indices must be a torch.Tensor, got {type(idx).__name__}")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise ValueError(f"mask indices must be an integer tensor, got dtype {idx.dtype}")
    if idx.ndim != 2:
        raise ValueError(f"mask indices must have shape (B, K), got {tuple(idx.shape)}")
    if idx.numel() == 0 or torch.compiler.is_compiling() or idx.device.type != "cpu":
        return
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"mask indices must lie in [0, {n}), got values in [{lo}, {hi}]")


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """Select tokens: x (B, N, D), idx (B, K) -> (B, K, D), row b taking x[b, idx[b]]."""
    if x.ndim != 3:
        raise ValueError(f"tokens must have shape (B, N, D), got {tuple(x.shape)}")
    check_indices(idx, x.shape[1])
    if idx.shape[0] != x.shape[0]:
        raise ValueError(f"batch size mismatch: tokens have {x.shape[0]} rows, indices {idx.shape[0]}")
    index = idx.to(device=x.device, dtype=torch.long).unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return torch.gather(x, dim=1, index=index)

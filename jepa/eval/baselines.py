"""Feature baselines a learned representation has to beat: the raw pixels themselves.

`RawPixels` is a stand-in encoder with the ViT's interface (`forward(clip) -> (B, N, D)`,
`embed_dim`), so the probes, k-NN and the embedding code treat it like any encoder. Its tokens
are the clip average-pooled to `size x size` per frame, one token per tubelet time slice
holding that slice's frames: under the linear probe's per-slice means this is the whole
downsampled clip, the baseline that motion features must beat.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class RawPixels(nn.Module):
    """forward(x (B, C, T, H, W)) -> (B, T / tubelet, tubelet * C * size * size) downsampled pixels."""

    def __init__(self, size: int = 8, tubelet_size: int = 2, in_chans: int = 3) -> None:
        super().__init__()
        if min(size, tubelet_size, in_chans) < 1:
            raise ValueError(f"size, tubelet_size and in_chans must be >= 1, got {size}, {tubelet_size}, {in_chans}")
        self.size, self.tubelet_size, self.in_chans = size, tubelet_size, in_chans
        self.embed_dim = tubelet_size * in_chans * size * size

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_chans or x.shape[2] % self.tubelet_size:
            raise ValueError(
                f"expected (B, {self.in_chans}, T, H, W) with T divisible by {self.tubelet_size}, got {tuple(x.shape)}"
            )
        pooled = F.adaptive_avg_pool3d(x.float(), (x.shape[2], self.size, self.size))
        return rearrange(pooled, "b c (t kt) h w -> b t (kt c h w)", kt=self.tubelet_size)

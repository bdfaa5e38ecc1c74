"""The slice forecast: the mean of one time slice's context tokens predicts the next slice's targets.

JEPA's predictor sees the context tokens with their positions, so an encoder can leave where
things are and how they move to the predictor's attention: its features then carry motion as a
pattern over positions, which a mean over tokens (a linear probe's input, a pooled embedding)
throws away. This term asks one linear map to predict every target token of slice t + 1 from
the *mean* of slice t's context tokens, so the pooled vector itself must hold the layout and
its motion.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jepa.masks.ops import check_indices

# The head's prefix in a run's model.safetensors; readers of runs skip it (it serves training only).
FORECAST_PREFIX = "forecast"


def slice_means(tokens: Tensor, idx: Tensor, grid: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """(B, T', D) mean of each time slice's tokens and the (B, T') count behind each mean.

    `tokens` (B, K, D) sit at flat indices `idx` (B, K) of the (T', H', W') grid (time-major, as
    the encoder numbers them); a slice with no tokens gets a zero mean and count 0.
    """
    slices, per_slice = grid[0], grid[1] * grid[2]
    check_indices(idx, slices * per_slice)
    t = (idx // per_slice).to(tokens.device)
    sums = tokens.new_zeros(tokens.shape[0], slices, tokens.shape[-1])
    sums.scatter_add_(1, t[..., None].expand_as(tokens), tokens)
    counts = torch.zeros(tokens.shape[0], slices, device=tokens.device, dtype=tokens.dtype)
    counts.scatter_add_(1, t, torch.ones_like(t, dtype=tokens.dtype))
    return sums / counts.clamp(min=1)[..., None], counts


class SliceForecast(nn.Module):
    """One linear map from a slice's mean token to the next slice's `tokens_per_slice` targets."""

    def __init__(self, embed_dim: int, tokens_per_slice: int, target_dim: int | None = None) -> None:
        super().__init__()
        self.tokens_per_slice = tokens_per_slice
        self.target_dim = target_dim or embed_dim
        self.proj = nn.Linear(embed_dim, tokens_per_slice * self.target_dim)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, means: Tensor) -> Tensor:
        """(B, S, D) slice means -> (B, S, tokens_per_slice, target_dim) predicted next slices."""
        return self.proj(means).unflatten(-1, (self.tokens_per_slice, self.target_dim))

    def loss(
        self, tokens: Tensor, idx: Tensor, targets: Tensor, grid: tuple[int, int, int], loss_exp: float = 1.0
    ) -> Tensor:
        """Mean |forecast(slice t's mean) - targets of slice t + 1|^e / e over the pairs whose slice t
        has context tokens; `targets` (B, N, D') hold the whole clip's grid."""
        slices, per_slice = grid[0], grid[1] * grid[2]
        if slices < 2:
            raise ValueError(f"the slice forecast needs at least two time slices, got a grid of {grid}")
        if per_slice != self.tokens_per_slice or targets.shape[1] != slices * per_slice:
            raise ValueError(
                f"the slice forecast was built for {self.tokens_per_slice} tokens per slice; this clip's grid "
                f"{grid} has {per_slice} (targets {tuple(targets.shape)}): train at the model's img_size"
            )
        means, counts = slice_means(tokens, idx, grid)
        pred = self(means[:, :-1])
        future = targets.unflatten(1, (slices, per_slice))[:, 1:]
        error = torch.abs(pred.to(future.dtype) - future)
        error = (error if loss_exp == 1 else error**loss_exp).mean(dim=(-1, -2)) / loss_exp
        valid = (counts[:, :-1] > 0).to(error.dtype)
        return (error * valid).sum() / valid.sum().clamp(min=1)

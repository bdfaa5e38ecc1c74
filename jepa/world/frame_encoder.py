"""The frozen encoder of a world model: each frame encoded alone, tokens layer-normed.

As in V-JEPA 2-AC, a frame is treated as an image (the encoder repeats it to one 2-frame
tubelet), so a latent trajectory is a stack of per-frame token maps (T, N, D) whatever the
encoder's clip length, and a goal image is encoded exactly like an observation. The layer norm
without affine parameters puts every token on the same scale, which makes the L1 energy of the
planner and the L1 losses of the predictor comparable across encoders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa.data.transforms import normalize_clip
from jepa.export.state import load_state
from jepa.models.registry import create_encoder


class FrameEncoder(nn.Module):
    """Wraps an encoder `f(x (B, 3, 1, H, W)) -> (B, N, D)`; frozen, always in eval mode."""

    def __init__(self, encoder: nn.Module, chunk_size: int = 256) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.encoder = encoder.eval().requires_grad_(False)
        self.chunk_size = chunk_size

    def train(self, mode: bool = True) -> FrameEncoder:
        """Stay in eval mode: the encoder is frozen (no dropout / drop-path noise in targets)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, frames: Tensor) -> Tensor:
        """uint8 frames (..., H, W, 3) -> layer-normed tokens (..., N, D), in chunks."""
        if frames.dtype != torch.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (..., H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        outs = []
        device = next(self.encoder.parameters()).device
        for chunk in flat.split(self.chunk_size):
            x = normalize_clip(chunk.to(device).unsqueeze(1))  # (K, 3, 1, H, W), ImageNet statistics
            tokens = self.encoder(x)
            outs.append(F.layer_norm(tokens, tokens.shape[-1:]))
        out = torch.cat(outs)
        return out.reshape(*lead, *out.shape[-2:])


def build_frame_encoder(
    name: str = "vit_tiny",
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    which: str = "target_encoder",
    state_dict: Mapping[str, Tensor] | None = None,
    chunk_size: int = 256,
) -> FrameEncoder:
    """The frozen encoder of a world model, from one of two sources:

    - `checkpoint`: any source `jepa.load_encoder` reads (our runs and exports, official
      V-JEPA `.pt` files, HF VJEPA2 directories); `overrides` are its keyword arguments;
    - otherwise the registry encoder `name` with `overrides`, randomly initialised from
      `seed`, then filled from `state_dict` when one is given (how a saved model reloads).

    A randomly initialised ViT is a legitimate frozen encoder for the bundled table: at init
    its blocks are close to identity, so its tokens are roughly a random linear projection of
    the patches, which keeps the distances between frames (see docs/world_model.md).
    """
    overrides = dict(overrides or {})
    if checkpoint is not None:
        from jepa.export.load import load_encoder  # the loaders pull in every format reader

        encoder = load_encoder(checkpoint, which=which, **overrides)
    else:
        torch.manual_seed(seed)
        encoder = create_encoder(name, **overrides)
    if state_dict is not None:
        load_state(encoder, state_dict, strict=True, what=f"{name} encoder")
    return FrameEncoder(encoder, chunk_size=chunk_size)

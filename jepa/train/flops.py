"""Analytic FLOP count of a JEPA train step (matmuls only; 1 multiply-add = 2 FLOPs).

MFU is achieved FLOP/s over the accelerator's peak; counting from the model's shapes (rather
than a profiler) makes the figure comparable across kernels, compile modes and machines.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def block_flops(tokens: int, dim: int, mlp_hidden: int) -> int:
    """Forward FLOPs of one pre-norm ViT block over ``tokens`` tokens."""
    linear = 2 * tokens * (3 * dim * dim + dim * dim + 2 * dim * mlp_hidden)
    attention = 2 * 2 * tokens * tokens * dim
    return linear + attention


def _mlp_hidden(block: nn.Module) -> int:
    return block.mlp.fc1.out_features


def encoder_flops(encoder: nn.Module, tokens_in: int, tokens_kept: int) -> int:
    proj = encoder.patch_embed.proj
    patch = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1] * proj.kernel_size[2]
    embed = 2 * tokens_in * patch * proj.out_channels
    return embed + sum(block_flops(tokens_kept, encoder.embed_dim, _mlp_hidden(b)) for b in encoder.blocks)


def predictor_flops(predictor: nn.Module, n_ctx: int, n_tgt: int) -> int:
    d_in = predictor.predictor_embed.in_features
    d_p = predictor.predictor_embed.out_features
    embed = 2 * n_ctx * d_in * d_p
    blocks = sum(block_flops(n_ctx + n_tgt, d_p, _mlp_hidden(b)) for b in predictor.predictor_blocks)
    proj = 2 * n_tgt * d_p * predictor.predictor_proj.out_features
    return embed + blocks + proj


def step_flops(model: nn.Module, batch: int, frames: int, img: int, n_ctx: Sequence[int], n_tgt: Sequence[int]) -> int:
    """Target forward + (forward + 2x backward) of context encoder and predictor per mask config."""
    enc = model.encoder
    n = _tokens(enc, frames, img)
    total = encoder_flops(model.target_encoder, n, n)
    for c, t in zip(n_ctx, n_tgt):
        total += 3 * (encoder_flops(enc, n, c) + predictor_flops(model.predictor, c, t))
    return batch * total


def _tokens(encoder: nn.Module, frames: int, img: int) -> int:
    t, h, w = encoder.grid_size(frames, img, img)
    return t * h * w

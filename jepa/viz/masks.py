"""Mask viewer: which tokens of a clip each mask config hands to the context and to the target.

Every token is one of three kinds: context (the encoder sees it; drawn as the clip itself),
target (the predictor must predict it; tinted orange) or dropped (neither: the released
collator cuts every row of a batch to the shortest one, so the last tokens in raster order of
the longer rows vanish; drawn grey). Tokens cover ``tubelet_size`` frames x ``patch_size``
pixels, so the tint is a stack of blocks that stay in place across a tubelet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from jepa.masks.multiblock import MaskConfig, MaskSampler, token_grid
from jepa.viz.render import Color, check_clip, grid, legend, upsample, vstack

DROPPED, CONTEXT, TARGET = 0, 1, 2
TARGET_COLOR: Color = (255, 110, 0)
DROPPED_COLOR: Color = (128, 128, 128)
LEGEND = (
    ("context: seen by the encoder", (235, 235, 235)),
    ("target: predicted", TARGET_COLOR),
    ("dropped: batch-length cut", DROPPED_COLOR),
)

Indices = torch.Tensor | np.ndarray | Sequence[int]
Grid = tuple[int, int, int]


def _as_index_array(idx: Indices, name: str, num_tokens: int) -> np.ndarray:
    arr = idx.detach().cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D integer index array for one sample, got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_tokens):
        raise ValueError(f"{name} indices must lie in [0, {num_tokens}), got [{arr.min()}, {arr.max()}]")
    if len(np.unique(arr)) != arr.size:
        raise ValueError(f"{name} indices must not repeat")
    return arr.astype(np.int64)


def token_labels(context: Indices, target: Indices, grid_shape: Sequence[int]) -> np.ndarray:
    """(T', H', W') uint8 map of DROPPED / CONTEXT / TARGET for one sample's index lists."""
    t, h, w = (int(g) for g in grid_shape)
    n = t * h * w
    ctx = _as_index_array(context, "context", n)
    tgt = _as_index_array(target, "target", n)
    if np.intersect1d(ctx, tgt).size:
        raise ValueError("context and target share tokens; a mask pair must be disjoint")
    labels = np.full(n, DROPPED, dtype=np.uint8)
    labels[ctx] = CONTEXT
    labels[tgt] = TARGET
    return labels.reshape(t, h, w)


def clip_token_grid(clip: np.ndarray, patch_size: int, tubelet_size: int) -> Grid:
    """(T', H', W') token grid of a (T, H, W, 3) clip; a single frame is one tubelet."""
    t, h, w = clip.shape[:3]
    return token_grid(t, (h, w), patch_size, tubelet_size)


def overlay_labels(
    clip: np.ndarray,
    labels: np.ndarray,
    patch_size: int,
    tubelet_size: int,
    alpha: float = 0.6,
    dropped_alpha: float = 0.85,
) -> np.ndarray:
    """Tint a clip's target tokens orange and its dropped tokens grey; context pixels are kept.

    ``alpha`` = 1 paints flat colours (what the tests count); lower values keep the content visible.
    """
    clip = check_clip(clip)
    expected = clip_token_grid(clip, patch_size, tubelet_size)
    labels = np.asarray(labels)
    if labels.shape != expected:
        raise ValueError(f"labels have shape {labels.shape}, the clip's token grid is {expected}")
    for name, a in (("alpha", alpha), ("dropped_alpha", dropped_alpha)):
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {a}")
    # [:T] because a single image is one tubelet of one frame
    per_pixel = upsample(labels, (tubelet_size, patch_size, patch_size))[: clip.shape[0]]
    out = clip.astype(np.float32)
    for kind, color, a in ((TARGET, TARGET_COLOR, alpha), (DROPPED, DROPPED_COLOR, dropped_alpha)):
        where = per_pixel == kind
        out[where] = (1.0 - a) * out[where] + a * np.asarray(color, dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def sample_masks(
    configs: Sequence[MaskConfig], grid_shape: Sequence[int], seed: int = 0, batch_size: int = 1, sample: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (context, target) index pair per config for sample ``sample`` of a drawn batch.

    With ``batch_size`` > 1 the pair shows the batch-length cut of the released collator, which
    a lone sample never has.
    """
    if not 0 <= sample < batch_size:
        raise ValueError(f"sample must lie in [0, batch_size={batch_size}), got {sample}")
    generator = torch.Generator().manual_seed(seed)
    contexts, targets = MaskSampler(configs, grid_shape)(batch_size, generator)
    return [(c[sample].numpy(), t[sample].numpy()) for c, t in zip(contexts, targets)]


def describe(cfg: MaskConfig) -> str:
    """A short row title, e.g. '8 blocks x 15% of the frame, 100% of the time'."""

    def pct(r: tuple[float, float]) -> str:
        lo, hi = (round(100 * v) for v in r)
        return f"{lo}%" if lo == hi else f"{lo}-{hi}%"

    s = "s" if cfg.num_blocks > 1 else ""
    return f"{cfg.num_blocks} block{s} x {pct(cfg.spatial_scale)} of the frame, {pct(cfg.temporal_scale)} of the time"


def _summary(labels: np.ndarray) -> str:
    n = labels.size
    parts = [
        f"{name} {100 * np.count_nonzero(labels == k) / n:.0f}%"
        for name, k in (("context", CONTEXT), ("target", TARGET), ("dropped", DROPPED))
    ]
    return ", ".join(parts)


def _overlays(
    clip: np.ndarray,
    masks: Sequence[tuple[Indices, Indices]],
    patch_size: int,
    tubelet_size: int,
    alpha: float,
    dropped_alpha: float,
) -> tuple[list[np.ndarray], list[str]]:
    clip = check_clip(clip)
    if not masks:
        raise ValueError("need at least one (context, target) mask pair")
    grid_shape = clip_token_grid(clip, patch_size, tubelet_size)
    overlays, summaries = [], []
    for ctx, tgt in masks:
        labels = token_labels(ctx, tgt, grid_shape)
        overlays.append(overlay_labels(clip, labels, patch_size, tubelet_size, alpha, dropped_alpha))
        summaries.append(_summary(labels))
    return overlays, summaries


def _names(names: Sequence[str] | None, count: int, prefix: str) -> list[str]:
    if names is None:
        return [f"{prefix} {i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"got {len(names)} names for {count} mask pairs")
    return list(names)


def render_mask_grid(
    clip: np.ndarray,
    masks: Sequence[tuple[Indices, Indices]],
    patch_size: int,
    tubelet_size: int,
    names: Sequence[str] | None = None,
    frame_step: int = 1,
    alpha: float = 0.6,
    dropped_alpha: float = 0.85,
    show_input: bool = True,
    show_legend: bool = True,
) -> np.ndarray:
    """PNG-ready grid: one row per mask pair (plus the input on top), columns = frames.

    ``frame_step`` = ``tubelet_size`` shows one frame per tubelet, which loses nothing (a mask
    is constant within a tubelet) and halves the width.
    """
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    overlays, summaries = _overlays(clip, masks, patch_size, tubelet_size, alpha, dropped_alpha)
    labels = [f"{n}: {s}" for n, s in zip(_names(names, len(masks), "mask config"), summaries)]
    frames = range(0, clip.shape[0], frame_step)
    rows = [[o[t] for t in frames] for o in overlays]
    if show_input:
        rows.insert(0, [clip[t] for t in frames])
        labels.insert(0, "input clip")
    picture = grid(rows, row_labels=labels, col_labels=[f"t={t}" for t in frames])
    return vstack([picture, legend(LEGEND)], pad=0) if show_legend else picture


def render_mask_animation(
    clip: np.ndarray,
    masks: Sequence[tuple[Indices, Indices]],
    patch_size: int,
    tubelet_size: int,
    names: Sequence[str] | None = None,
    alpha: float = 0.6,
    dropped_alpha: float = 0.85,
) -> list[np.ndarray]:
    """One animation frame per clip frame: the input and every mask pair side by side.

    ``names`` become column titles above cells one frame wide, so keep them short.
    """
    overlays, _ = _overlays(clip, masks, patch_size, tubelet_size, alpha, dropped_alpha)
    titles = ["input", *_names(names, len(masks), "mask")]
    frames = []
    for t in range(clip.shape[0]):
        cells = [clip[t]] + [o[t] for o in overlays]
        frames.append(vstack([grid([cells], col_labels=titles), legend(LEGEND)], pad=0))
    return frames

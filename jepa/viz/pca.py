"""Feature PCA: the three main directions of an encoder's patch features, shown as RGB.

The PCA is fitted over every token of the clip at once, so one colour means the same feature
direction in every frame: an object that keeps its colour across time is tracked by the
features, and parts that share a colour are grouped by them. Each component is mapped to
[0, 1] between robust percentiles (not min / max) so a few outlier tokens do not wash out the
rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from jepa.data.transforms import normalize_clip
from jepa.viz.render import check_clip, grid, resize, upsample

Device = str | torch.device | None


def clip_to_input(clip: np.ndarray, device: Device = None) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> (1, 3, T, H, W) normalised exactly as in training."""
    clip = check_clip(clip)
    return normalize_clip(torch.from_numpy(np.ascontiguousarray(clip)).to(device).unsqueeze(0))


@torch.no_grad()
def patch_features(encoder: nn.Module, clip: np.ndarray, device: Device = None) -> torch.Tensor:
    """Encode one clip and return its tokens on their grid as float32 (T', H', W', D) on the CPU.

    The encoder must expose ``grid_size(T, H, W)`` (as :class:`jepa.models.VisionTransformer`
    does) so the flat t-major token list can be laid back onto the grid.
    """
    if not hasattr(encoder, "grid_size"):
        raise ValueError(f"encoder {type(encoder).__name__} has no grid_size(T, H, W); cannot place its tokens")
    clip = check_clip(clip)
    param = next(encoder.parameters())
    grid_shape = encoder.grid_size(*clip.shape[:3])
    was_training = encoder.training
    encoder.eval()
    try:
        tokens = encoder(clip_to_input(clip, device or param.device).to(param.dtype))
    finally:
        encoder.train(was_training)
    if tokens.ndim != 3 or tokens.shape[1] != int(np.prod(grid_shape)):
        raise ValueError(
            f"encoder returned tokens of shape {tuple(tokens.shape)}, expected (1, {int(np.prod(grid_shape))}, D)"
        )
    return tokens[0].float().cpu().reshape(*grid_shape, tokens.shape[-1])


def pca_components(features: torch.Tensor, n_components: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Project (N, D) features on their first principal components.

    Returns (N, n_components) scores and the explained-variance ratio of each component. The
    sign of each component is fixed (its largest loading positive), so the colours of a clip
    do not flip between runs or devices.
    """
    x = torch.as_tensor(features).float()
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    if not 1 <= n_components <= min(x.shape):
        raise ValueError(f"n_components must lie in [1, min(N, D) = {min(x.shape)}], got {n_components}")
    x = x - x.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    basis = vh[:n_components]
    pivot = basis.gather(1, basis.abs().argmax(dim=1, keepdim=True))
    basis = basis * torch.where(pivot < 0, -1.0, 1.0)
    variance = s.square()
    ratio = variance[:n_components] / variance.sum().clamp(min=torch.finfo(variance.dtype).tiny)
    return x @ basis.T, ratio


def scores_to_rgb(scores: torch.Tensor, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """(N, 3) PCA scores -> uint8 (N, 3) colours, each channel stretched between percentiles.

    A component with no spread (constant features) maps to mid-grey instead of dividing by zero.
    """
    lo_p, hi_p = percentiles
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    s = torch.as_tensor(scores).float().numpy()
    if s.ndim != 2 or s.shape[1] != 3:
        raise ValueError(f"scores must be (N, 3), got shape {s.shape}")
    lo = np.percentile(s, lo_p, axis=0)
    hi = np.percentile(s, hi_p, axis=0)
    span = hi - lo
    flat = span <= 1e-12 * np.maximum(np.abs(hi), 1.0)
    unit = np.where(flat, 0.5, (s - lo) / np.where(flat, 1.0, span))
    return np.rint(np.clip(unit, 0.0, 1.0) * 255).astype(np.uint8)


def pca_video(
    features: torch.Tensor,
    frame_shape: tuple[int, int, int],
    percentiles: tuple[float, float] = (1.0, 99.0),
    smooth: bool = False,
) -> np.ndarray:
    """(T', H', W', D) token features -> uint8 (T, H, W, 3) colour video at the input's size.

    Every tubelet's colour map is repeated over its frames and resized to the frame size:
    nearest (``smooth=False``) shows the true token resolution, bilinear looks softer.
    """
    feats = torch.as_tensor(features)
    if feats.ndim != 4:
        raise ValueError(f"features must be (T', H', W', D), got shape {tuple(feats.shape)}")
    t_tok, h_tok, w_tok, dim = feats.shape
    num_frames, height, width = frame_shape
    if num_frames < 1 or num_frames % t_tok:
        raise ValueError(f"{num_frames} frames do not split evenly into {t_tok} tubelets")
    scores, _ = pca_components(feats.reshape(-1, dim), 3)
    rgb = scores_to_rgb(scores, percentiles).reshape(t_tok, h_tok, w_tok, 3)
    per_frame = upsample(rgb, (num_frames // t_tok, 1, 1))
    return np.stack([resize(f, height, width, smooth=smooth) for f in per_frame])


def render_pca_strip(
    clip: np.ndarray,
    colors: np.ndarray,
    frame_step: int = 1,
    title: str | None = None,
) -> np.ndarray:
    """PNG-ready picture: the input frames on top, their feature colours below, columns = frames."""
    clip = check_clip(clip)
    colors = check_clip(colors, "colors")
    if colors.shape != clip.shape:
        raise ValueError(f"colors {colors.shape} must match the clip {clip.shape}")
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    frames = range(0, clip.shape[0], frame_step)
    rows = [[clip[t] for t in frames], [colors[t] for t in frames]]
    labels = ["input clip", title or "first 3 principal components of the patch features (R, G, B)"]
    return grid(rows, row_labels=labels, col_labels=[f"t={t}" for t in frames])


def render_pca_animation(clip: np.ndarray, colors: np.ndarray) -> list[np.ndarray]:
    """One animation frame per clip frame: input and feature colours side by side."""
    clip = check_clip(clip)
    colors = check_clip(colors, "colors")
    if colors.shape != clip.shape:
        raise ValueError(f"colors {colors.shape} must match the clip {clip.shape}")
    return [grid([[c, p]], col_labels=["input", "PCA"]) for c, p in zip(clip, colors)]


def explained_variance(features: torch.Tensor, n_components: int = 3) -> Sequence[float]:
    """Explained-variance ratio of the first components, for a caption under the picture."""
    feats = torch.as_tensor(features)
    _, ratio = pca_components(feats.reshape(-1, feats.shape[-1]), n_components)
    return ratio.tolist()

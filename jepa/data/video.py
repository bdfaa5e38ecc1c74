"""Decode chosen frames of a video file into uint8 arrays, with PyAV or decord.

Both backends decode only what the requested frames need and hand back RGB uint8
(N, H, W, 3) arrays, optionally downscaled so the short side equals `target_short_side`
(when the video is larger). Every failure to open or decode (empty, garbage, truncated,
missing file) is raised as `VideoDecodeError`, so callers catch one type.

Frame index i is the i-th frame in presentation order; for the PyAV backend it is derived
from timestamps (pts * time_base * fps), which is exact for constant-frame-rate video.

Frames come back as a player shows them: a display rotation (phone videos store portrait
frames sideways with a display matrix) is applied by both backends.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Literal, Protocol

import numpy as np

from jepa.data.clips import ClipSampler, ShortVideoError

__all__ = [
    "ClipSampler",
    "ShortVideoError",
    "VideoDecodeError",
    "VideoReader",
    "available_backends",
    "open_video",
    "read_clips",
    "resolve_backend",
]

Backend = Literal["auto", "pyav", "decord"]


class VideoDecodeError(RuntimeError):
    """A video could not be opened or one of the requested frames could not be decoded."""


class VideoReader(Protocol):
    """What the dataset needs from a decoding backend."""

    path: str
    num_frames: int
    fps: float
    # The frame size; for a file with a display rotation of +-90 degrees PyAV reports it as
    # stored and decord as shown (frames from both come back as shown).
    height: int
    width: int

    def get_frames(self, indices: np.ndarray, target_short_side: int | None = None) -> np.ndarray:
        """uint8 RGB frames (len(indices), H, W, 3) for sorted, unique frame indices."""

    def close(self) -> None:
        """Release the file and decoder."""


def available_backends() -> list[str]:
    """Installed backends, preferred first."""
    return [name for name, module in (("pyav", "av"), ("decord", "decord")) if importlib.util.find_spec(module)]


def resolve_backend(backend: Backend) -> str:
    """Map "auto" to an installed backend; PyAV first because it skips frames nothing needs.

    On 240p H.264 with 2 s keyframes (tools/bench_data.py) the PyAV reader decodes only the
    reference frames and the wanted ones, and is faster than decord's get_batch, which
    decodes and converts every frame it passes.
    """
    installed = available_backends()
    if backend == "auto":
        if not installed:
            raise ImportError("no video backend installed: pip install av (or decord2)")
        return installed[0]
    if backend not in ("pyav", "decord"):
        raise ValueError(f"unknown video backend {backend!r}; use 'auto', 'pyav' or 'decord'")
    if backend not in installed:
        raise ImportError(f"video backend {backend!r} is not installed")
    return backend


def scaled_size(height: int, width: int, target_short_side: int | None) -> tuple[int, int]:
    """(height, width) after shrinking so the short side is `target_short_side`; never enlarges."""
    short = min(height, width)
    if not target_short_side or short <= target_short_side:
        return height, width
    scale = target_short_side / short
    # Even sizes keep chroma-subsampled conversions exact; never drop below the target.
    new_h = max(target_short_side, 2 * round(height * scale / 2))
    new_w = max(target_short_side, 2 * round(width * scale / 2))
    return (target_short_side, new_w) if height <= width else (new_h, target_short_side)


def open_video(path: str | os.PathLike, backend: Backend = "auto") -> VideoReader:
    """Open a video for frame access; raises VideoDecodeError when it cannot be read."""
    path = os.fspath(path)
    name = resolve_backend(backend)
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: empty file")
    if name == "pyav":
        from jepa.data.video_pyav import PyAVReader

        return PyAVReader(path)
    from jepa.data.video_decord import DecordReader

    return DecordReader(path)


def read_clips(
    path: str | os.PathLike,
    indices: np.ndarray,
    backend: Backend = "auto",
    target_short_side: int | None = None,
) -> np.ndarray:
    """Decode the frames of clips given as an index array (num_clips, T) -> uint8 (num_clips, T, H, W, 3).

    Each distinct frame is decoded once even when clips overlap or pad by repetition.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 2 or indices.size == 0:
        raise ValueError(f"indices must be a non-empty (num_clips, T) array, got shape {indices.shape}")
    reader = open_video(path, backend)
    try:
        return gather_clips(reader, indices, target_short_side)
    finally:
        reader.close()


def gather_clips(reader: VideoReader, indices: np.ndarray, target_short_side: int | None = None) -> np.ndarray:
    """Decode the distinct frames of `indices` (num_clips, T) once and lay them out per clip."""
    if indices.min() < 0 or indices.max() >= reader.num_frames:
        raise ValueError(
            f"{reader.path}: frame indices must lie in [0, {reader.num_frames}), got [{indices.min()}, {indices.max()}]"
        )
    unique, inverse = np.unique(indices, return_inverse=True)
    frames = reader.get_frames(unique, target_short_side)
    if len(unique) == indices.size and np.array_equal(unique, indices.ravel()):
        return frames.reshape(*indices.shape, *frames.shape[1:])  # the usual case: no copy
    return frames[inverse.reshape(indices.shape)]


def frame_count(duration_s: float | None, fps: float) -> int:
    """Frames implied by a duration when the container does not store a count."""
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        return 0
    return int(math.floor(duration_s * fps + 1e-6))

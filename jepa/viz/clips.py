"""Where pictures get a clip from: frames of a video file, or a generated demo clip."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from jepa.data.synthetic import render_video
from jepa.data.video import open_video


def demo_clip(num_frames: int = 16, size: int = 128, seed: int = 0, class_id: int = 2) -> np.ndarray:
    """uint8 (num_frames, size, size, 3): sprites moving over a texture, drawn like the generated
    dataset the CPU demo trains on, so a demo checkpoint sees familiar input.

    The default class (blue triangles) stays distinct from the orange target tint of the masks.
    """
    if num_frames < 1 or size < 8:
        raise ValueError(f"need num_frames >= 1 and size >= 8, got {num_frames}, {size}")
    rng = np.random.default_rng(seed)
    direction = int(rng.integers(0, 8))
    speed = max(1.0, size / 32)
    return render_video(class_id, direction, speed, num_frames, size, rng, num_sprites=3)


def center_crop_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Scale the short side to ``size`` and cut the centred ``size`` x ``size`` square."""
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    pil = Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.asarray(pil)[top : top + size, left : left + size].copy()


def read_clip(
    path: str | os.PathLike, num_frames: int = 16, size: int = 128, start: int = 0, step: int = 1
) -> np.ndarray:
    """uint8 (num_frames, size, size, 3): frames start, start+step, ... of a video, centre-cropped."""
    if num_frames < 1 or size < 1 or start < 0 or step < 1:
        raise ValueError(f"need num_frames, size, step >= 1 and start >= 0, got {num_frames}, {size}, {step}, {start}")
    reader = open_video(path)
    try:
        indices = start + step * np.arange(num_frames)
        if indices[-1] >= reader.num_frames:
            raise ValueError(
                f"{path} has {reader.num_frames} frames; {num_frames} frames from {start} "
                f"every {step} need {indices[-1] + 1}"
            )
        frames = reader.get_frames(indices)
    finally:
        reader.close()
    return np.stack([center_crop_resize(f, size) for f in frames])

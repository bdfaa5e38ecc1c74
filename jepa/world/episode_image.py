"""Pictures of planned episodes: a PNG strip of frames next to the goal, and a GIF.

The strip shows evenly spaced observed frames (first and last included) then, after a gap,
the goal image framed in green, with each frame's true distance to the goal written below it,
so a reader sees at a glance whether the planner got there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from jepa.world.mpc import EpisodeResult


def episode_strip(episode: EpisodeResult, num_frames: int = 8, scale: int = 2) -> Image.Image:
    """Observed frames (evenly spaced) | goal, upscaled by `scale`, distances underneath."""
    if num_frames < 2 or scale < 1:
        raise ValueError(f"need num_frames >= 2 and scale >= 1, got {num_frames}, {scale}")
    total = len(episode.frames)
    idx = np.unique(np.linspace(0, total - 1, min(num_frames, total)).round().astype(int))
    h, w = episode.frames.shape[1:3]
    tile_w, tile_h, gap, label_h = w * scale, h * scale, 4 * scale, 12
    width = len(idx) * (tile_w + gap) + 3 * gap + tile_w
    canvas = Image.new("RGB", (width, tile_h + 2 * gap + label_h), "white")
    draw = ImageDraw.Draw(canvas)

    def paste(frame: np.ndarray, x: int, label: str) -> None:
        canvas.paste(Image.fromarray(frame).resize((tile_w, tile_h), Image.NEAREST), (x, gap))
        draw.text((x + 2, gap + tile_h + 1), label, fill="black")

    for k, i in enumerate(idx):
        dist = np.linalg.norm(episode.states[i] - episode.goal)
        paste(episode.frames[i], k * (tile_w + gap), f"t={i} d={dist:.2f}")
    x_goal = len(idx) * (tile_w + gap) + 2 * gap
    draw.rectangle((x_goal - 3, gap - 3, x_goal + tile_w + 2, gap + tile_h + 2), outline=(20, 160, 40), width=3)
    paste(episode.goal_frame, x_goal, "goal")
    return canvas


def save_episode_gif(episode: EpisodeResult, path: str | Path, scale: int = 3, fps: int = 4) -> None:
    """Observed frames side by side with the goal, one GIF frame per step."""
    goal = np.asarray(episode.goal_frame)
    frames = [
        Image.fromarray(np.concatenate([f, np.full_like(f[:, :4], 255), goal], axis=1)).resize(
            ((2 * goal.shape[1] + 4) * scale, goal.shape[0] * scale), Image.NEAREST
        )
        for f in episode.frames
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)

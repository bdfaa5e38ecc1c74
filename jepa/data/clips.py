"""Which frames make a clip: frame count, temporal stride and where clips start.

Sampling is kept apart from decoding so the exact frame indices of every clip can be drawn
first (from a seeded generator), decoded in one pass, and returned for reproducibility.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SHORT_VIDEO = ("fit", "pad", "skip")


class ShortVideoError(ValueError):
    """A video has fewer frames than one clip spans and the sampler is set to skip it."""


class ClipSampler:
    """Draws `num_clips` clips of `frames_per_clip` frame indices from a video.

    The temporal stride is given by exactly one of:
    - `fps`: frames are taken at this rate (stride = video_fps / fps, fractional strides are
      rounded per frame so the clip keeps the requested rate on average; the released code
      truncates the stride to an integer, which gives 16 frames at 4.3 fps from 30 fps video);
    - `frame_step`: a fixed integer stride in source frames;
    - `duration`: the clip covers this many seconds (stride = duration * video_fps / frames).

    With several clips the valid start range is split into `num_clips` equal segments, one
    clip per segment, so clips come out in temporal order. `random_start` picks the start
    uniformly inside each segment (training); otherwise clips start evenly spaced, a single
    clip in the middle of the video (evaluation). A video shorter than one clip is spread over
    (`short_video="fit"`: the clip covers the whole video at the stride that fits, so it plays
    faster but every frame still moves), padded by repeating its last frame (`"pad"`: the tail
    is a still picture) or rejected with `ShortVideoError` (`"skip"`).
    """

    def __init__(
        self,
        frames_per_clip: int,
        fps: float | None = None,
        frame_step: int | None = None,
        duration: float | None = None,
        num_clips: int = 1,
        random_start: bool = True,
        short_video: Literal["fit", "pad", "skip"] = "fit",
    ) -> None:
        if frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be >= 1, got {frames_per_clip}")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        given = [
            name for name, v in (("fps", fps), ("frame_step", frame_step), ("duration", duration)) if v is not None
        ]
        if len(given) != 1:
            raise ValueError(f"give exactly one of fps / frame_step / duration, got {given or 'none'}")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if frame_step is not None and (int(frame_step) != frame_step or frame_step < 1):
            raise ValueError(f"frame_step must be a positive integer, got {frame_step}")
        if duration is not None and duration <= 0:
            raise ValueError(f"duration must be > 0, got {duration}")
        if short_video not in SHORT_VIDEO:
            raise ValueError(f"short_video must be one of {SHORT_VIDEO}, got {short_video!r}")
        self.frames_per_clip = int(frames_per_clip)
        self.fps = fps
        self.frame_step = None if frame_step is None else int(frame_step)
        self.duration = duration
        self.num_clips = int(num_clips)
        self.random_start = random_start
        self.short_video = short_video

    def stride(self, video_fps: float) -> float:
        """Source frames between two sampled frames (may be fractional or below 1)."""
        if self.frame_step is not None:
            return float(self.frame_step)
        if not video_fps or video_fps <= 0 or not np.isfinite(video_fps):
            raise ValueError(f"the video reports no usable frame rate ({video_fps}); use frame_step")
        if self.fps is not None:
            return video_fps / self.fps
        return self.duration * video_fps / self.frames_per_clip

    def offsets(self, video_fps: float) -> np.ndarray:
        """Frame offsets of one clip relative to its first frame, shape (frames_per_clip,)."""
        return np.floor(np.arange(self.frames_per_clip) * self.stride(video_fps) + 0.5).astype(np.int64)

    def sample(self, num_frames: int, video_fps: float, rng: np.random.Generator) -> np.ndarray:
        """Frame indices, int64 array (num_clips, frames_per_clip), all in [0, num_frames)."""
        if num_frames < 1:
            raise ValueError(f"a video needs at least one frame, got {num_frames}")
        offsets = self.offsets(video_fps)
        span = int(offsets[-1]) + 1
        if span > num_frames:
            if self.short_video == "skip":
                raise ShortVideoError(f"video has {num_frames} frames, a clip spans {span}")
            if self.short_video == "fit":
                # Evenly over all frames: a video with fewer frames than the clip repeats each.
                clip = np.floor(np.linspace(0, num_frames - 1, self.frames_per_clip) + 0.5).astype(np.int64)
            else:
                clip = np.minimum(offsets, num_frames - 1)
            return np.repeat(clip[None], self.num_clips, axis=0)
        last_start = num_frames - span
        if self.random_start:
            bounds = np.linspace(0, last_start + 1, self.num_clips + 1)
            lows = np.floor(bounds[:-1]).astype(np.int64)
            highs = np.maximum(np.floor(bounds[1:]).astype(np.int64), lows + 1)
            starts = rng.integers(lows, highs)
        elif self.num_clips == 1:
            starts = np.array([last_start // 2], dtype=np.int64)
        else:
            starts = np.floor(np.linspace(0, last_start, self.num_clips) + 0.5).astype(np.int64)
        return starts[:, None] + offsets[None, :]

    def __repr__(self) -> str:
        rate = (
            f"fps={self.fps}"
            if self.fps is not None
            else f"frame_step={self.frame_step}"
            if self.frame_step is not None
            else f"duration={self.duration}"
        )
        return (
            f"ClipSampler(frames_per_clip={self.frames_per_clip}, {rate}, num_clips={self.num_clips}, "
            f"random_start={self.random_start}, short_video={self.short_video!r})"
        )

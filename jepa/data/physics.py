"""Labelled physics renders: Push-T (gym-pusht, a pymunk simulation) driven by straight pushes.

Each video starts the simulator in a random state and commands the agent (the small disc) along
a straight line at a constant speed; where it meets the T block, the simulator pushes the block.
Labels from the state: `class` = the block's starting angle in `num_angles` bins (what one
frame shows), `direction` = the agent's heading (one of `num_directions`), `speed` = its
commanded speed (workspace units per control step, the workspace being 512 units wide). The
layout is the one of `jepa.data.synthetic` (`factors.csv`, per-factor manifests), so probes and
benchmarks read it as they read the sprites. Needs the `sim` extra (`pip install -e '.[sim]'`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from jepa.data.synthetic import (
    build_labelled_set,
    draw_factors,
    params_key,
    split_names,
    write_set,
)
from jepa.data.transforms import resize_frames

PHYSICS_VERSION = 1
WORKSPACE = 512.0
MARGIN = 40.0  # keep the agent this far from the walls, so it never presses against one


def pusht_env():
    """A Push-T environment rendering RGB frames; a clear error without the `sim` extra."""
    try:
        import gym_pusht  # noqa: F401  (registers the environment)
        import gymnasium
    except ImportError as e:
        raise ModuleNotFoundError("the physics set renders gym-pusht: pip install -e '.[sim]'") from e
    return gymnasium.make("gym_pusht/PushT-v0", obs_type="pixels", render_mode="rgb_array")


def render_push(env, heading: float, speed: float, angle: float, num_frames: int, rng) -> np.ndarray:
    """uint8 (num_frames, H, W, 3): the agent commanded along `heading` at `speed` from a random
    start whose whole path stays inside the walls; the block starts at `angle` somewhere random."""
    velocity = speed * np.array([math.cos(heading), math.sin(heading)])
    travel = velocity * num_frames
    low = MARGIN + np.maximum(0, -travel)
    high = WORKSPACE - MARGIN - np.maximum(0, travel)
    agent = rng.uniform(low, high)
    block = rng.uniform(120, WORKSPACE - 120, 2)
    state = np.array([*agent, *block, angle])
    frames = [env.reset(seed=int(rng.integers(2**31)), options={"reset_to_state": state})[0]]
    for t in range(1, num_frames):
        frames.append(env.step(agent + velocity * t)[0])
    return np.stack(frames)


def make_pusht_dataset(
    root: str | os.PathLike,
    num_videos: int = 256,
    num_frames: int = 16,
    size: int = 64,
    fps: int = 10,
    seed: int = 0,
    num_angles: int = 8,
    num_directions: int = 8,
    speeds: tuple[float, ...] = (6.0, 10.0, 14.0),
    val_fraction: float = 0.25,
    overwrite: bool = False,
) -> Path:
    """Write a Push-T set under `root` (reused when its parameters match); returns `manifest.csv`.
    `fps` is the simulator's control rate (10 Hz), so the clips play in real time."""
    if num_videos < 1 or num_frames < 2 or size < 16 or size % 2 or min(speeds) <= 0:
        raise ValueError("need num_videos >= 1, num_frames >= 2, an even size >= 16 and positive speeds")
    if max(speeds) * num_frames > WORKSPACE - 2 * MARGIN:
        raise ValueError(f"a path of {max(speeds) * num_frames:.0f} units does not fit in the workspace")
    params = {
        "version": PHYSICS_VERSION,
        "family": "pusht",
        "num_videos": int(num_videos),
        "num_frames": int(num_frames),
        "size": int(size),
        "fps": int(fps),
        "seed": int(seed),
        "num_classes": int(num_angles),
        "num_directions": int(num_directions),
        "speeds": [float(s) for s in speeds],
        "val_fraction": float(val_fraction),
    }
    return build_labelled_set(root, params, _generate, overwrite)


def _generate(out: Path, p: dict) -> None:
    rng = np.random.default_rng(p["seed"])
    n, env = p["num_videos"], pusht_env()
    factors = draw_factors(rng, p)
    splits = split_names(n, p["val_fraction"])
    video_seeds = rng.integers(2**63, size=n)

    def render(i: int) -> np.ndarray:
        video_rng = np.random.default_rng(int(video_seeds[i]))
        bin_width = 2 * math.pi / p["num_classes"]
        angle = (factors["class"][i] + video_rng.uniform(0.1, 0.9)) * bin_width  # inside its bin
        heading = 2 * math.pi * factors["direction"][i] / p["num_directions"]
        frames = render_push(env, heading, p["speeds"][factors["speed"][i]], angle, p["num_frames"], video_rng)
        return resize_frames(torch.from_numpy(frames), (p["size"], p["size"])).numpy()

    try:
        write_set(out, p, factors, splits, render)
    finally:
        env.close()


def ensure_pusht_dataset(cache_dir: str | os.PathLike, **params) -> Path:
    """Manifest of a Push-T set with these parameters under `cache_dir`, made on first use."""
    key = params_key({"version": PHYSICS_VERSION, "family": "pusht", **params})
    return make_pusht_dataset(Path(cache_dir) / key, **params)

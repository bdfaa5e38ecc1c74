"""Collect random-action episodes from the simulated table into the trajectory format.

Random actions are what the released AC model was trained on too in spirit (teleoperated,
unlabelled play data, no task rewards): the predictor only has to learn how actions move
the scene, so broad coverage of states and actions matters more than purposeful behaviour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jepa.world.env import PointTableEnv
from jepa.world.trajectories import Episode, Manifest, TrajectoryWriter


def random_episode(env: PointTableEnv, num_frames: int, seed: int) -> Episode:
    """One episode of `num_frames` frames from a seeded start with uniform random actions."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)
    frames, states, actions = [obs.frame], [obs.state], []
    for _ in range(num_frames - 1):
        action = rng.uniform(-env.max_action, env.max_action, env.action_dim).astype(np.float32)
        obs = env.step(action)
        frames.append(obs.frame)
        states.append(obs.state)
        actions.append(action)
    return Episode(np.stack(frames), np.stack(actions), np.stack(states), info={"seed": seed})


def collect_random_trajectories(
    env: PointTableEnv, root: str | Path, num_episodes: int, num_frames: int, seed: int = 0, fps: int = 4
) -> Manifest:
    """Write `num_episodes` episodes (seeds seed, seed+1, ...) to `root`; returns the manifest."""
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    writer = TrajectoryWriter(root, fps=fps, action_dim=env.action_dim, state_dim=env.state_dim)
    for i in range(num_episodes):
        writer.add(random_episode(env, num_frames, seed + i))
    return writer.manifest

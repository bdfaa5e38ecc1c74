"""Planning episodes: what the agent saw at each step next to the goal image it was given.

The planner only ever sees the goal as an image, so the picture puts that image beside every
step; a third row shows the per-pixel difference to it, which fades as the agent closes in.

An episode is saved as one ``.npz`` (see :func:`save_episode`): ``frames`` (T, H, W, 3) uint8,
the observed frames including the first; ``goal_frame`` (H, W, 3) uint8; optionally ``states``
(T, S) and ``goal`` (S,) (the distance to the goal per step is then shown), ``actions``
(T-1, A), ``energies`` (T-1,) (the planner's energy per step) and ``success`` (a bool).
A trajectory dataset episode (``jepa.world.trajectories``) can be shown too, its last frame
standing in for the goal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jepa.viz.render import check_clip, check_image, grid, uniform_size, upsample

PathLike = str | Path
OPTIONAL_ARRAYS = ("states", "goal", "actions", "energies")


@dataclass
class PlanEpisode:
    """One episode to draw; ``distances`` (T,) are to the goal state, when known."""

    frames: np.ndarray
    goal_frame: np.ndarray
    distances: np.ndarray | None = None
    energies: np.ndarray | None = None
    success: bool | None = None

    def __post_init__(self) -> None:
        self.frames = check_clip(self.frames, "frames")
        self.goal_frame = check_image(self.goal_frame, "goal_frame")
        if self.goal_frame.shape != self.frames.shape[1:]:
            raise ValueError(f"goal_frame {self.goal_frame.shape} must match the frames' size {self.frames.shape[1:]}")
        if self.distances is not None:
            self.distances = np.asarray(self.distances, dtype=np.float64)
            if self.distances.shape != (len(self.frames),):
                raise ValueError(f"distances must be ({len(self.frames)},), got {self.distances.shape}")
        if self.energies is not None:
            self.energies = np.asarray(self.energies, dtype=np.float64)
            if self.energies.shape != (len(self.frames) - 1,):
                raise ValueError(
                    f"energies must be ({len(self.frames) - 1},), one per action, got {self.energies.shape}"
                )


def save_episode(
    path: PathLike,
    frames: np.ndarray,
    goal_frame: np.ndarray,
    states: np.ndarray | None = None,
    goal: np.ndarray | None = None,
    actions: np.ndarray | None = None,
    energies: np.ndarray | None = None,
    success: bool | None = None,
) -> Path:
    """Write an episode in the layout :func:`load_episode` reads (validated first)."""
    _episode(frames, goal_frame, states, goal, energies, success)
    arrays = {"frames": np.asarray(frames), "goal_frame": np.asarray(goal_frame)}
    for name, value in zip(OPTIONAL_ARRAYS, (states, goal, actions, energies)):
        if value is not None:
            arrays[name] = np.asarray(value, dtype=np.float32)
    if success is not None:
        arrays["success"] = np.asarray(bool(success))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _episode(
    frames: np.ndarray,
    goal_frame: np.ndarray,
    states: np.ndarray | None,
    goal: np.ndarray | None,
    energies: np.ndarray | None,
    success: bool | None,
) -> PlanEpisode:
    distances = None
    if (states is None) != (goal is None):
        raise ValueError("states and goal come together: the distance to the goal needs both")
    if states is not None:
        states, goal = np.asarray(states, dtype=np.float64), np.asarray(goal, dtype=np.float64)
        if states.ndim != 2 or goal.shape != states.shape[1:]:
            raise ValueError(f"states must be (T, S) and goal (S,), got {states.shape} and {goal.shape}")
        distances = np.linalg.norm(states - goal, axis=1)
    return PlanEpisode(frames, goal_frame, distances, energies, success)


def load_episode(path: PathLike) -> PlanEpisode:
    """Read an episode written by :func:`save_episode` (or any npz with the same keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no episode file at {path}")
    with np.load(path) as data:
        missing = {"frames", "goal_frame"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}; found {sorted(data.files)}")
        get = {name: data[name] if name in data.files else None for name in OPTIONAL_ARRAYS}
        success = bool(data["success"]) if "success" in data.files else None
        return _episode(data["frames"], data["goal_frame"], get["states"], get["goal"], get["energies"], success)


def episode_from_result(result: Any) -> PlanEpisode:
    """A planning result in memory (e.g. ``jepa.world.mpc.EpisodeResult``): anything with
    ``frames`` and ``goal_frame``, and optionally ``states`` + ``goal`` and ``success``."""
    missing = [name for name in ("frames", "goal_frame") if not hasattr(result, name)]
    if missing:
        raise ValueError(f"{type(result).__name__} lacks {missing}")
    states, goal = getattr(result, "states", None), getattr(result, "goal", None)
    success = getattr(result, "success", None)
    return _episode(result.frames, result.goal_frame, states, goal, None, None if success is None else bool(success))


def episode_from_trajectories(root: PathLike, index: int = 0) -> PlanEpisode:
    """Episode ``index`` of a trajectory dataset, its last frame taken as the goal."""
    from jepa.world.trajectories import load_manifest, read_episode

    records = load_manifest(root).episodes
    if not 0 <= index < len(records):
        raise ValueError(f"episode index {index} out of range: {root} holds {len(records)} episodes")
    episode = read_episode(root, records[index])
    states = episode.states
    return PlanEpisode(episode.frames, episode.frames[-1], np.linalg.norm(states - states[-1], axis=1))


def _difference(frames: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Per-pixel mean |frame - goal| as grey, scaled by the episode's largest difference."""
    diff = np.abs(frames.astype(np.int16) - goal.astype(np.int16)).mean(axis=-1)
    top = max(float(diff.max()), 1.0)
    grey = np.rint(diff * (255.0 / top)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _scaled(image: np.ndarray, scale: int) -> np.ndarray:
    return upsample(image, (scale, scale)) if scale > 1 else image


def _outcome(ep: PlanEpisode) -> str:
    parts = []
    if ep.distances is not None:
        parts.append(f"distance to goal {ep.distances[0]:.2f} -> {ep.distances[-1]:.2f}")
    if ep.success is not None:
        parts.append("success" if ep.success else "failure")
    return f" ({', '.join(parts)})" if parts else ""


def render_plan_strip(ep: PlanEpisode, frame_step: int = 1, scale: int = 1, show_difference: bool = True) -> np.ndarray:
    """PNG-ready picture: observed frames, the goal beside each, and their difference; columns = steps.

    Every ``frame_step``-th step is shown, and always the last one (where the episode ended).
    """
    if frame_step < 1 or scale < 1:
        raise ValueError(f"frame_step and scale must be >= 1, got {frame_step}, {scale}")
    last = len(ep.frames) - 1
    steps = sorted(set(range(0, last + 1, frame_step)) | {last})
    goal = _scaled(ep.goal_frame, scale)
    rows = [[_scaled(ep.frames[t], scale) for t in steps], [goal for _ in steps]]
    labels = [f"observed{_outcome(ep)}", "goal image given to the planner"]
    if show_difference:
        diff = _difference(ep.frames, ep.goal_frame)
        rows.append([_scaled(diff[t], scale) for t in steps])
        labels.append("|observed - goal|")
    return grid(rows, row_labels=labels, col_labels=[f"t={t}" for t in steps])


def render_plan_animation(ep: PlanEpisode, scale: int = 2) -> list[np.ndarray]:
    """One animation frame per step: the observation and the goal side by side, with the step's numbers."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    goal = _scaled(ep.goal_frame, scale)
    out = []
    for t, frame in enumerate(ep.frames):
        caption = f"step {t}/{len(ep.frames) - 1}"
        if ep.distances is not None:
            caption += f"  dist {ep.distances[t]:.2f}"
        if ep.energies is not None and t < len(ep.energies):
            caption += f"  energy {ep.energies[t]:.3f}"
        out.append(grid([[_scaled(frame, scale), goal]], row_labels=[caption], col_labels=["observed", "goal"]))
    return uniform_size(out)

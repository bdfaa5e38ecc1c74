"""The on-disk trajectory format: one mp4 and one npz per episode, plus a JSON manifest.

    root/
      manifest.json     {"format": "jepa.trajectories", "version": 1, "fps": 4,
                         "action_dim": 2, "state_dim": 2, "extrinsics_dim": 0,
                         "episodes": [{"video": "000000.mp4", "arrays": "000000.npz",
                                       "num_frames": 16, "info": {...}}, ...]}
      000000.mp4        T frames, H.264
      000000.npz        states (T, state_dim), actions (T-1, action_dim), float32;
                        optional extrinsics (T, extrinsics_dim)

actions[t] is what was applied between frame t and frame t+1 (so there is one action fewer
than frames), states[t] is the proprioceptive state seen with frame t. This is the layout the
released V-JEPA 2-AC trainer consumes (actions (T-1, 7), states (T, 7)), so robot recordings
fit by writing their camera stream and end-effector poses / deltas in these two files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jepa.atomic import write_text_atomic
from jepa.world.video_io import read_video, write_video

FORMAT_NAME = "jepa.trajectories"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class Episode:
    """One recorded episode in memory."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    actions: np.ndarray  # (T - 1, action_dim) float32
    states: np.ndarray  # (T, state_dim) float32
    extrinsics: np.ndarray | None = None  # (T, extrinsics_dim) float32
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.states = np.asarray(self.states, dtype=np.float32)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {self.frames.dtype} {self.frames.shape}")
        num_frames = len(self.frames)
        if num_frames < 2:
            raise ValueError(f"an episode needs at least 2 frames, got {num_frames}")
        if self.states.ndim != 2 or len(self.states) != num_frames:
            raise ValueError(f"states must be (T={num_frames}, state_dim), got {self.states.shape}")
        if self.actions.ndim != 2 or len(self.actions) != num_frames - 1:
            raise ValueError(f"actions must be (T-1={num_frames - 1}, action_dim), got {self.actions.shape}")
        if self.extrinsics is not None:
            self.extrinsics = np.asarray(self.extrinsics, dtype=np.float32)
            if self.extrinsics.ndim != 2 or len(self.extrinsics) != num_frames:
                raise ValueError(f"extrinsics must be (T={num_frames}, dim), got {self.extrinsics.shape}")

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclass
class EpisodeRecord:
    """A manifest row: where an episode's files are, relative to the dataset root."""

    video: str
    arrays: str
    num_frames: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    fps: int
    action_dim: int
    state_dim: int
    extrinsics_dim: int = 0
    episodes: list[EpisodeRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"not a {FORMAT_NAME} manifest (format={data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported {FORMAT_NAME} version {data.get('version')!r}, expected {FORMAT_VERSION}")
        episodes = [EpisodeRecord(**row) for row in data.get("episodes", [])]
        return cls(
            fps=int(data["fps"]),
            action_dim=int(data["action_dim"]),
            state_dim=int(data["state_dim"]),
            extrinsics_dim=int(data.get("extrinsics_dim", 0)),
            episodes=episodes,
        )


def load_manifest(root: str | Path) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {root}: not a trajectory dataset")
    return Manifest.from_json(json.loads(path.read_text()))


def _write_manifest(root: Path, manifest: Manifest) -> None:
    """Write to a temporary file and rename, so a crash never leaves a half-written manifest."""
    write_text_atomic(root / MANIFEST_NAME, json.dumps(manifest.to_json(), indent=1))


class TrajectoryWriter:
    """Adds episodes to a dataset directory; appends when the directory already holds one.

    The manifest is rewritten after every episode, so an interrupted collection keeps every
    episode finished so far.
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        action_dim: int,
        state_dim: int,
        extrinsics_dim: int = 0,
        crf: int = 10,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.crf = crf
        if (self.root / MANIFEST_NAME).exists():
            self.manifest = load_manifest(self.root)
            found = (self.manifest.fps, self.manifest.action_dim, self.manifest.state_dim, self.manifest.extrinsics_dim)
            wanted = (fps, action_dim, state_dim, extrinsics_dim)
            if found != wanted:
                raise ValueError(f"{self.root} holds (fps, action, state, extrinsics dims) {found}, not {wanted}")
        else:
            self.manifest = Manifest(fps, action_dim, state_dim, extrinsics_dim)
            _write_manifest(self.root, self.manifest)

    def add(self, episode: Episode) -> EpisodeRecord:
        m = self.manifest
        if episode.actions.shape[1] != m.action_dim or episode.states.shape[1] != m.state_dim:
            raise ValueError(
                f"episode has action/state dims {episode.actions.shape[1]}/{episode.states.shape[1]}, "
                f"dataset expects {m.action_dim}/{m.state_dim}"
            )
        ext_dim = 0 if episode.extrinsics is None else episode.extrinsics.shape[1]
        if ext_dim != m.extrinsics_dim:
            raise ValueError(f"episode has extrinsics dim {ext_dim}, dataset expects {m.extrinsics_dim}")
        stem = f"{len(m.episodes):06d}"
        write_video(self.root / f"{stem}.mp4", episode.frames, fps=m.fps, crf=self.crf)
        arrays = {"actions": episode.actions, "states": episode.states}
        if episode.extrinsics is not None:
            arrays["extrinsics"] = episode.extrinsics
        np.savez(self.root / f"{stem}.npz", **arrays)
        record = EpisodeRecord(f"{stem}.mp4", f"{stem}.npz", episode.num_frames, dict(episode.info))
        m.episodes.append(record)
        _write_manifest(self.root, m)
        return record


def read_episode(root: str | Path, record: EpisodeRecord) -> Episode:
    """Decode one episode's video and load its arrays, checking they agree."""
    root = Path(root)
    frames = read_video(root / record.video)
    arrays_path = root / record.arrays
    if not arrays_path.is_file():
        raise FileNotFoundError(f"no arrays file at {arrays_path}")
    with np.load(arrays_path) as arrays:
        missing = {"actions", "states"} - set(arrays.files)
        if missing:
            raise ValueError(f"{arrays_path} lacks {sorted(missing)}")
        extrinsics = arrays["extrinsics"] if "extrinsics" in arrays.files else None
        actions, states = arrays["actions"], arrays["states"]
    if len(frames) != record.num_frames:
        raise ValueError(f"{record.video} has {len(frames)} frames, manifest says {record.num_frames}")
    return Episode(frames, actions, states, extrinsics, dict(record.info))


def iter_episodes(root: str | Path) -> Iterator[Episode]:
    root = Path(root)
    for record in load_manifest(root).episodes:
        yield read_episode(root, record)

"""Footage sets: the labelled layout, motion that matches its label, reuse, and clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from jepa.data.footage import (
    _velocity,
    ensure_footage_dataset,
    load_footage,
    make_footage_dataset,
    render_camera,
    render_cutout,
)
from jepa.data.synthetic import FACTORS, write_video


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """A static frame with structure everywhere, so a shifted window is never equal to another."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("footage")
    paths = []
    for i in range(2):
        frames = np.stack([np.roll(_texture(96, 128, i), t, axis=1) for t in range(30)])
        paths.append(write_video(root / f"src{i}.mp4", frames, 25))
    return paths


@pytest.mark.parametrize("direction", range(8))
def test_camera_window_moves_by_its_velocity(direction: int) -> None:
    still = np.repeat(_texture(120, 120, 0)[None], 4, axis=0)
    velocity = _velocity(direction, 2.0, 8)
    clip = render_camera(still, velocity, 16, 32, np.random.default_rng(direction))
    step = np.round(velocity).astype(int)  # the 8 headings at 2 px/frame: integer in the axis directions
    if np.allclose(velocity, step):
        # The window moves by `velocity`, so the content moves the other way on screen.
        assert np.array_equal(clip[1][max(0, -step[0]) : 32 - max(0, step[0]), max(0, -step[1]) : 32 - max(0, step[1])],
                              clip[0][max(0, step[0]) : 32 + min(0, step[0]), max(0, step[1]) : 32 + min(0, step[1])])  # fmt: skip
    assert clip.shape == (16, 32, 32, 3) and clip.dtype == np.uint8


def test_cutout_object_moves_over_a_still_background() -> None:
    still = np.zeros((4, 64, 64, 3), np.uint8)
    texture = np.full((12, 12, 3), 200.0, np.float32)
    alpha = np.ones((12, 12), np.float32)
    clip = render_cutout((texture, alpha), still, _velocity(0, 1.0, 8), 8, 32, np.random.default_rng(0))
    cols = [np.nonzero(frame[..., 0].max(axis=0))[0] for frame in clip]
    rows = [np.nonzero(frame[..., 0].max(axis=1))[0] for frame in clip]
    # Direction 0 is "right" (+column) at 1 px/frame, as in the sprites; the object stays whole.
    assert [c[0] for c in cols] == [cols[0][0] + t for t in range(8)]
    assert all(r.tolist() == rows[0].tolist() for r in rows) and all(len(c) == 12 for c in cols)


@pytest.mark.parametrize("family", ["camera", "cutout"])
def test_footage_set_layout_labels_and_reuse(family: str, sources: list[Path], tmp_path: Path) -> None:
    manifest = make_footage_dataset(tmp_path / family, family, sources, num_videos=8, num_frames=8, size=32, seed=3)
    root = manifest.parent
    with open(root / "factors.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and [r["split"] for r in rows].count("val") == 2
    classes = 2 if family == "camera" else 8
    assert {int(r["class"]) for r in rows} <= set(range(classes)) and len({r["direction"] for r in rows}) == 8
    for factor in FACTORS:
        assert (root / f"{factor}_train.csv").is_file() and (root / f"{factor}_val.csv").is_file()
    frames = load_footage(root / rows[0]["path"], 32, 1)
    assert frames.shape == (8, 32, 32, 3)
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    again = make_footage_dataset(tmp_path / family, family, sources, num_videos=8, num_frames=8, size=32, seed=3)
    assert again == manifest and (root / "synthetic.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        make_footage_dataset(tmp_path / family, family, sources, num_videos=8, num_frames=8, size=32, seed=4)
    cached = ensure_footage_dataset(tmp_path / "cache", family, sources, num_videos=8, num_frames=8, size=32, seed=3)
    assert cached.parent.parent == tmp_path / "cache"


def test_footage_rejects_bad_requests(sources: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="family"):
        make_footage_dataset(tmp_path / "x", "pan", sources)
    with pytest.raises(ValueError, match="does not fit"):
        render_camera(np.zeros((4, 40, 40, 3), np.uint8), _velocity(0, 3.0, 8), 16, 32, np.random.default_rng(0))

"""The Push-T set: a real simulator (gym-pusht) whose agent moves where its label says."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gym_pusht", reason="the physics set needs the sim extra")

from jepa.data.physics import make_pusht_dataset, pusht_env, render_push  # noqa: E402
from jepa.data.synthetic import FACTORS  # noqa: E402


def _agent_centre(frame: np.ndarray) -> np.ndarray:
    """(row, col) of the blue agent disc (the only saturated blue in a Push-T render)."""
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    rows, cols = np.nonzero((b > 170) & (r < 120) & (b - g > 60))
    return np.array([rows.mean(), cols.mean()])


def test_the_agent_moves_along_its_heading_at_its_speed() -> None:
    env = pusht_env()
    try:
        for k in range(8):
            heading = 2 * math.pi * k / 8
            frames = render_push(env, heading, 12.0, 0.3, 16, np.random.default_rng(k))
            moved = _agent_centre(frames[-1]) - _agent_centre(frames[0])
            # Columns follow the workspace's x; 12 units x 15 steps = 180 of 512 units = ~34 px of 96.
            if abs(math.cos(heading)) > 0.5:
                assert np.sign(moved[1]) == np.sign(math.cos(heading)), (k, moved)
            assert 15 < np.hypot(*moved) < 45, (k, moved)
    finally:
        env.close()


def test_pusht_set_layout_and_reuse(tmp_path: Path) -> None:
    manifest = make_pusht_dataset(tmp_path / "p", num_videos=8, num_frames=6, size=32, seed=1)
    with open(manifest.parent / "factors.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["split"] for r in rows} == {"train", "val"}
    assert len({r["direction"] for r in rows}) == 8 and all(0 <= int(r["speed"]) < 3 for r in rows)
    for factor in FACTORS:
        assert (manifest.parent / f"{factor}_all.csv").is_file()
    assert make_pusht_dataset(tmp_path / "p", num_videos=8, num_frames=6, size=32, seed=1) == manifest
    with pytest.raises(ValueError, match="does not fit"):
        make_pusht_dataset(tmp_path / "q", speeds=(40.0,), num_frames=16)

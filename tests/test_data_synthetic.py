"""Synthetic dataset: real decodable videos, labels that match the motion, determinism, reuse."""

import csv
import math

import numpy as np
import pytest

from jepa.data.manifest import read_manifest
from jepa.data.synthetic import ensure_synthetic_dataset, make_synthetic_dataset, render_video
from jepa.data.video import open_video, read_clips

SMALL = dict(num_videos=8, num_frames=12, size=32, fps=6, num_classes=3, num_directions=4, speeds=(1.0, 2.0))


def test_dataset_layout_and_factor_manifests(tmp_path):
    manifest = make_synthetic_dataset(tmp_path / "syn", seed=1, **SMALL)
    entries = read_manifest(manifest)
    assert len(entries) == 8 and {e.label for e in entries} <= {0, 1, 2}
    with open(tmp_path / "syn" / "factors.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["split"] for r in rows].count("val") == 2
    for factor, values in [("class", 3), ("direction", 4), ("speed", 2)]:
        labels = [e.label for e in read_manifest(tmp_path / "syn" / f"{factor}_all.csv")]
        assert labels == [int(r[factor]) for r in rows] and max(labels) < values
        assert len(read_manifest(tmp_path / "syn" / f"{factor}_train.csv")) == 6
    reader = open_video(entries[0].path)
    assert (reader.num_frames, reader.fps, reader.height, reader.width) == (12, 6.0, 32, 32)
    reader.close()


def test_same_seed_same_data_and_reuse(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", seed=2, **SMALL)
    b = make_synthetic_dataset(tmp_path / "b", seed=2, **SMALL)
    c = make_synthetic_dataset(tmp_path / "c", seed=3, **SMALL)
    index = np.arange(12)[None]
    ea, eb, ec = read_manifest(a), read_manifest(b), read_manifest(c)
    assert [e.label for e in ea] == [e.label for e in eb]
    assert all(np.array_equal(read_clips(x.path, index), read_clips(y.path, index)) for x, y in zip(ea, eb))
    assert not np.array_equal(read_clips(ea[0].path, index), read_clips(ec[0].path, index))
    stamp = (tmp_path / "a" / "videos" / "000000.mp4").stat().st_mtime_ns
    assert make_synthetic_dataset(tmp_path / "a", seed=2, **SMALL) == a
    assert (tmp_path / "a" / "videos" / "000000.mp4").stat().st_mtime_ns == stamp, "reused, not rewritten"
    with pytest.raises(FileExistsError):
        make_synthetic_dataset(tmp_path / "a", seed=9, **SMALL)
    assert make_synthetic_dataset(tmp_path / "a", seed=9, overwrite=True, **SMALL).is_file()


def test_ensure_uses_a_cache_folder_per_parameter_set(tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA_CACHE", str(tmp_path / "cache"))
    first = ensure_synthetic_dataset(**SMALL)
    assert first.is_relative_to(tmp_path / "cache" / "synthetic")
    assert ensure_synthetic_dataset(**SMALL) == first
    assert ensure_synthetic_dataset(**{**SMALL, "seed": 4}) != first


@pytest.mark.parametrize("direction, speed", [(0, 1.0), (1, 2.0), (2, 3.0), (3, 1.0)])
def test_sprites_move_as_labelled(direction, speed):
    size, steps = 64, 6
    video = render_video(1, direction, speed, steps, size, np.random.default_rng(direction), num_directions=4)
    # The green square is the only strongly green area; track its wrapped centre of mass.
    green = (video[..., 1].astype(int) - video[..., [0, 2]].max(-1)) > 80
    angle = 2 * math.pi * direction / 4
    expected = speed * np.array([math.sin(angle), math.cos(angle)])
    centres = []
    for mask in green:
        ys, xs = np.nonzero(mask)
        phase = [np.angle(np.exp(2j * np.pi * v / size).mean()) * size / (2 * np.pi) for v in (ys, xs)]
        centres.append(np.array(phase))
    steps_seen = [((b - a + size / 2) % size) - size / 2 for a, b in zip(centres, centres[1:])]
    np.testing.assert_allclose(np.mean(steps_seen, axis=0), expected, atol=0.5)


def test_bad_parameters_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        make_synthetic_dataset(tmp_path / "x", size=31)
    with pytest.raises(ValueError):
        make_synthetic_dataset(tmp_path / "x", num_classes=99)
    with pytest.raises(ValueError, match="distractors"):
        make_synthetic_dataset(tmp_path / "x", distractors=-1)


def _track(mask_video: np.ndarray, size: int) -> np.ndarray:
    """Mean per-frame displacement of a wrapped blob given as a (T, H, W) bool video."""
    centres = []
    for mask in mask_video:
        ys, xs = np.nonzero(mask)
        centres.append([np.angle(np.exp(2j * np.pi * v / size).mean()) * size / (2 * np.pi) for v in (ys, xs)])
    centres = np.array(centres)
    return np.mean(((centres[1:] - centres[:-1] + size / 2) % size) - size / 2, axis=0)


def test_harder_variants_keep_the_labels_relative_to_the_scene(tmp_path, monkeypatch):
    """Without the options the videos and the cache folder are those made before the options
    existed; a distractor only adds pixels of another shape; under a pan the texture moves and
    the sprite moves as labelled relative to it."""
    size, steps, rng = 64, 8, lambda: np.random.default_rng(7)
    plain = render_video(1, 1, 2.0, steps, size, rng(), num_directions=4)
    assert np.array_equal(plain, render_video(1, 1, 2.0, steps, size, rng(), num_directions=4, distractors=0, pan=0.0))
    monkeypatch.setenv("JEPA_CACHE", str(tmp_path / "cache"))
    assert ensure_synthetic_dataset(**SMALL, distractors=0, pan=0.0) == ensure_synthetic_dataset(**SMALL)
    assert ensure_synthetic_dataset(**SMALL, distractors=1).parent.name != ensure_synthetic_dataset(**SMALL).parent.name

    busy = render_video(1, 1, 2.0, steps, size, rng(), num_directions=4, distractors=1)
    changed = np.abs(busy.astype(int) - plain).max(-1) > 30
    sprite_area = (size // 6) ** 2
    assert changed.any(axis=(1, 2)).all() and changed.sum(axis=(1, 2)).max() <= sprite_area

    panned = render_video(1, 1, 2.0, steps, size, rng(), num_directions=4, pan=1.5)
    green = (panned[..., 1].astype(int) - panned[..., [0, 2]].max(-1)) > 80
    texture = panned.astype(np.float32).mean(-1)
    shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
    err = [np.abs(np.roll(texture[0], shift, axis=(0, 1)) - texture[2])[~green[2]].mean() for shift in shifts]
    scene = np.array(shifts[int(np.argmin(err))]) / 2  # pixels per frame the texture moves on screen
    assert np.hypot(*scene) == pytest.approx(1.5, abs=0.5)
    np.testing.assert_allclose(_track(green, size) - scene, 2.0 * np.array([1.0, 0.0]), atol=0.6)

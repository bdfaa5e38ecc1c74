"""Pictures: each renderer is run on real files (an mp4 written and decoded back, a metrics
file, an episode npz) and the resulting pixels are checked, not just the file's existence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from tool_module import load_tool

from jepa.masks import VJEPA2_DEFAULT
from jepa.models import create_encoder
from jepa.train.logging import JsonlMetrics, read_metrics
from jepa.viz.clips import demo_clip, read_clip
from jepa.viz.curves import RAW_COLOR, SMOOTH_COLOR, ema_smooth, format_tick, linear_ticks, log_ticks, plot_metrics
from jepa.viz.masks import (
    DROPPED,
    DROPPED_COLOR,
    TARGET,
    TARGET_COLOR,
    clip_token_grid,
    overlay_labels,
    render_mask_animation,
    render_mask_grid,
    sample_masks,
    token_labels,
)
from jepa.viz.pca import patch_features, pca_components, pca_video, render_pca_strip, scores_to_rgb
from jepa.viz.plan import (
    episode_from_result,
    episode_from_trajectories,
    load_episode,
    render_plan_animation,
    render_plan_strip,
    save_episode,
)
from jepa.viz.render import grid, save_gif, save_mp4

PATCH, TUBELET, FRAMES, SIZE = 8, 2, 4, 32
PAD = 2  # grid spacing and border, see jepa.viz.render.grid


def _count_color(image: np.ndarray, color: tuple[int, int, int], tol: int = 0) -> int:
    return int((np.abs(image.astype(np.int16) - np.array(color)) <= tol).all(axis=-1).sum())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The demo clip, through a real H.264 file: written with PyAV, decoded by jepa.data."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    save_mp4(list(demo_clip(FRAMES, 48, seed=1)), path, fps=4, crf=12)
    decoded = read_clip(path, num_frames=FRAMES, size=SIZE)
    assert decoded.shape == (FRAMES, SIZE, SIZE, 3) and decoded.dtype == np.uint8
    return decoded


@pytest.fixture(scope="module")
def viz_tool():
    return load_tool("viz")


def test_grid_places_cells_with_even_spacing() -> None:
    cells = [[np.full((10, 12, 3), 10 * (2 * r + c), dtype=np.uint8) for c in range(3)] for r in range(2)]
    picture = grid(cells)
    assert picture.shape == (2 * 10 + PAD + 2 * PAD, 3 * 12 + 2 * PAD + 2 * PAD, 3)
    for r in range(2):
        for c in range(3):
            y, x = PAD + r * (10 + PAD), PAD + c * (12 + PAD)
            assert (picture[y : y + 10, x : x + 12] == 10 * (2 * r + c)).all()
    labelled = grid(cells, row_labels=["a much longer row label than the cells are wide", "b"])
    assert labelled.shape[1] > picture.shape[1] and labelled.shape[0] > picture.shape[0]


def test_mask_colours_match_token_fractions(clip: np.ndarray) -> None:
    grid_shape = clip_token_grid(clip, PATCH, TUBELET)
    assert grid_shape == (FRAMES // TUBELET, SIZE // PATCH, SIZE // PATCH)
    masks = sample_masks(VJEPA2_DEFAULT, grid_shape, seed=3, batch_size=4)
    picture = render_mask_grid(
        clip, masks, PATCH, TUBELET, alpha=1.0, dropped_alpha=1.0, show_input=False, show_legend=False
    )
    assert picture.shape[1] >= FRAMES * SIZE + (FRAMES - 1) * PAD + 2 * PAD
    assert picture.shape[0] > len(masks) * (SIZE + PAD)

    num_tokens = math.prod(grid_shape)
    cell_pixels = FRAMES * SIZE * SIZE
    expected_target = sum(len(t) for _, t in masks) / num_tokens * cell_pixels
    dropped = sum(num_tokens - len(c) - len(t) for c, t in masks)
    assert dropped > 0, "a batch of 4 should show the batch-length cut"
    expected_dropped = dropped / num_tokens * cell_pixels
    assert abs(_count_color(picture, TARGET_COLOR) - expected_target) <= 0.01 * cell_pixels
    assert abs(_count_color(picture, DROPPED_COLOR) - expected_dropped) <= 0.01 * cell_pixels


def test_mask_overlay_places_tokens_in_t_major_order(clip: np.ndarray) -> None:
    grid_shape = clip_token_grid(clip, PATCH, TUBELET)
    # token 1*16 + 2*4 + 3 is tubelet 1, row 2, column 3: frames 2-3, pixels [16:24, 24:32];
    # token 0 is tubelet 0, row 0, column 0: frames 0-1, pixels [0:8, 0:8]
    labels = token_labels(np.setdiff1d(np.arange(32), [0, 27]), [27], grid_shape)
    assert labels[1, 2, 3] == TARGET and labels[0, 0, 0] == DROPPED
    out = overlay_labels(clip, labels, PATCH, TUBELET, alpha=0.6)
    changed = (out != clip).any(axis=-1)
    assert changed[2:, 16:24, 24:32].all() and changed[:2, :8, :8].all()
    changed[2:, 16:24, 24:32] = False
    changed[:2, :8, :8] = False
    assert not changed.any(), "context pixels must be left as they are"


def test_token_labels_reject_bad_indices() -> None:
    with pytest.raises(ValueError, match="share tokens"):
        token_labels([0, 1], [1, 2], (1, 2, 2))
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        token_labels([0, 4], [1], (1, 2, 2))
    with pytest.raises(ValueError, match="1-D integer"):
        token_labels(np.zeros((2, 2), dtype=np.int64), [1], (1, 2, 2))


def test_mask_animation_gif_and_mp4(clip: np.ndarray, tmp_path: Path) -> None:
    masks = sample_masks(VJEPA2_DEFAULT, clip_token_grid(clip, PATCH, TUBELET), seed=0)
    frames = render_mask_animation(clip, masks, PATCH, TUBELET)
    assert len(frames) == FRAMES and len({f.shape for f in frames}) == 1
    assert frames[0].std() > 20
    gif = save_gif(frames, tmp_path / "m.gif")
    with Image.open(gif) as im:
        assert im.n_frames == FRAMES and im.size == (frames[0].shape[1], frames[0].shape[0])
    mp4 = save_mp4(frames, tmp_path / "m.mp4")
    with av.open(str(mp4)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    h, w = frames[0].shape[:2]
    assert len(decoded) == FRAMES and decoded[0].shape == (h + h % 2, w + w % 2, 3)


def test_pca_components_find_the_main_direction() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, generator=g), torch.randn(500, generator=g)
    feats = (
        10 * a[:, None] * torch.eye(8)[2] + 3 * b[:, None] * torch.eye(8)[5] + 0.1 * torch.randn(500, 8, generator=g)
    )
    scores, ratio = pca_components(feats, 3)
    assert abs(torch.corrcoef(torch.stack([scores[:, 0], a]))[0, 1]) > 0.99
    assert abs(torch.corrcoef(torch.stack([scores[:, 1], b]))[0, 1]) > 0.99
    assert ratio[0] > ratio[1] > ratio[2] and ratio[0] > 0.85
    flipped, _ = pca_components(-feats, 3)
    assert torch.allclose(flipped, -scores, atol=1e-3), "the basis has a fixed sign, whatever the SVD returns"
    assert scores_to_rgb(torch.zeros(10, 3)).tolist() == [[128, 128, 128]] * 10
    with pytest.raises(ValueError, match="n_components"):
        pca_components(feats, 9)


def test_pca_picture_of_a_tiny_encoder(clip: np.ndarray) -> None:
    encoder = create_encoder("vit_tiny", img_size=SIZE, num_frames=FRAMES, patch_size=PATCH, depth=2)
    feats = patch_features(encoder, clip)
    assert feats.shape == (FRAMES // TUBELET, SIZE // PATCH, SIZE // PATCH, 192)
    colors = pca_video(feats, clip.shape[:3])
    assert colors.shape == clip.shape and colors.dtype == np.uint8
    token_colors = colors[::TUBELET, ::PATCH, ::PATCH].reshape(-1, 3)
    assert len(np.unique(token_colors, axis=0)) > 8, "colours should vary across tokens"
    assert token_colors.std(axis=0).min() > 20, "every principal component should spread"
    assert (colors[0] == colors[1]).all(), "frames of one tubelet share a token"
    strip = render_pca_strip(clip, colors)
    assert strip.shape[1] >= FRAMES * SIZE + (FRAMES - 1) * PAD + 2 * PAD and strip.std() > 20


def test_curves_from_a_metrics_file(tmp_path: Path) -> None:
    log = JsonlMetrics(tmp_path)
    rng = np.random.default_rng(0)
    for step in range(0, 200, 5):
        lr = 1e-3 * min(1.0, step / 40) * (0.5 + 0.5 * math.cos(math.pi * step / 200))
        log.log({"step": step, "loss": 1.0 / (1 + step / 50) + 0.05 * rng.random(), "lr": lr})
    log.close()
    picture = plot_metrics(read_metrics(tmp_path), ["loss", "lr"], width=400)
    assert picture.shape == (440, 400, 3)
    loss_panel, lr_panel = picture[:220], picture[220:]
    assert _count_color(loss_panel, SMOOTH_COLOR, tol=30) > 200
    assert _count_color(loss_panel, RAW_COLOR, tol=20) > 100
    assert _count_color(lr_panel, SMOOTH_COLOR, tol=30) > 200, "lr at step 0 is 0 and is left off the log axis"
    with pytest.raises(ValueError, match="no record holds"):
        plot_metrics(read_metrics(tmp_path), ["accuracy"])


def test_ticks_and_smoothing() -> None:
    assert linear_ticks(0.13, 0.87) == [0.2, 0.4, 0.6, 0.8]
    assert linear_ticks(0, 200, 7) == [0, 50, 100, 150, 200]
    assert log_ticks(8e-6, 2e-3) == [1e-5, 1e-4, 1e-3]
    assert log_ticks(2e-4, 9e-4) == [2e-4, 5e-4]
    assert [format_tick(v) for v in (0, 1e-4, 2.5e-4, 0.5, 150.0, 3e5)] == ["0", "1e-4", "2.5e-4", "0.5", "150", "3e5"]
    smooth = ema_smooth([2.0, 2.0, float("nan"), 2.0], 0.9)
    assert np.isnan(smooth[2]) and np.allclose(smooth[[0, 1, 3]], 2.0), "debiased EMA of a constant is the constant"


def test_plan_episode_round_trip_and_pictures(tmp_path: Path) -> None:
    frames = np.zeros((6, 16, 16, 3), dtype=np.uint8)
    for t in range(6):  # a white square walking right until it sits on the goal position
        frames[t, 4:8, 2 * t : 2 * t + 4] = 255
    goal_frame = frames[-1].copy()
    states = np.stack([np.arange(6) * 0.1, np.zeros(6)], axis=1)
    path = save_episode(
        tmp_path / "ep.npz",
        frames,
        goal_frame,
        states=states,
        goal=states[-1],
        actions=np.diff(states, axis=0),
        success=True,
    )
    ep = load_episode(path)
    assert ep.success is True and np.allclose(ep.distances, 0.1 * np.arange(5, -1, -1))
    strip = render_plan_strip(ep, frame_step=2, scale=2)
    cols = [0, 2, 4, 5]
    assert strip.shape[1] >= len(cols) * 32 + (len(cols) - 1) * PAD + 2 * PAD
    diff_row = strip[-PAD - 32 : -PAD]
    x_last = PAD + (len(cols) - 1) * (32 + PAD)
    first, last = diff_row[:, PAD : PAD + 32], diff_row[:, x_last : x_last + 32]
    assert first.max() == 255 and last.max() == 0, "the difference to the goal vanishes at the goal"
    frames_out = render_plan_animation(ep, scale=2)
    assert len(frames_out) == 6 and len({f.shape for f in frames_out}) == 1
    with pytest.raises(ValueError, match="states and goal"):
        save_episode(tmp_path / "bad.npz", frames, goal_frame, states=states)


def test_plan_episode_from_a_world_model_result() -> None:
    from jepa.world.env import PointTableEnv
    from jepa.world.mpc import RandomPolicy, run_episode

    env = PointTableEnv(image_size=16)
    result = run_episode(env, RandomPolicy(env.action_dim, env.max_action), seed=0, max_steps=3)
    ep = episode_from_result(result)
    assert ep.frames.shape == (4, 16, 16, 3) and ep.success == result.success
    assert np.isclose(ep.distances[-1], result.final_distance, atol=1e-5)
    assert render_plan_strip(ep).std() > 10


def test_plan_episode_from_a_trajectory_dataset(tmp_path: Path) -> None:
    from jepa.world.trajectories import Episode, TrajectoryWriter

    frames = np.zeros((5, 16, 16, 3), dtype=np.uint8)
    for t in range(5):
        frames[t, 6:10, 3 * t : 3 * t + 4] = 200
    states = np.stack([np.arange(5) * 0.2, np.zeros(5)], axis=1)
    TrajectoryWriter(tmp_path, fps=4, action_dim=2, state_dim=2).add(Episode(frames, np.diff(states, axis=0), states))
    ep = episode_from_trajectories(tmp_path, 0)
    assert ep.frames.shape == frames.shape and np.allclose(ep.distances, [0.8, 0.6, 0.4, 0.2, 0.0], atol=1e-6)
    assert (ep.goal_frame == ep.frames[-1]).all()
    with pytest.raises(ValueError, match="out of range"):
        episode_from_trajectories(tmp_path, 1)


def test_viz_tool_writes_every_picture(clip: np.ndarray, viz_tool, tmp_path: Path) -> None:
    video = save_mp4(list(clip), tmp_path / "in.mp4")
    with pytest.raises(ValueError, match="has 4 frames"):
        read_clip(video, num_frames=FRAMES, step=2)
    common = ["--video", str(video), "--frames", str(FRAMES), "--size", str(SIZE), "--patch-size", str(PATCH)]
    mask_yaml = Path(__file__).parents[1] / "configs" / "mask" / "vjepa2.yaml"
    out = {name: str(tmp_path / name) for name in ("m.png", "m.gif", "p.png", "p.mp4", "c.png", "e.png", "e.gif")}
    viz_tool.main(["masks", *common, "--mask-config", str(mask_yaml), "--out", out["m.png"], "--gif", out["m.gif"]])
    viz_tool.main(["pca", *common, "--out", out["p.png"], "--mp4", out["p.mp4"], "--colors", "64"])
    records = [{"step": s, "loss": 1 / (s + 1), "lr": 1e-3} for s in range(20)]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    viz_tool.main(["curves", "--metrics", str(tmp_path / "run"), "--out", out["c.png"]])
    save_episode(tmp_path / "ep.npz", clip, clip[-1])
    viz_tool.main(["plan", "--episode", str(tmp_path / "ep.npz"), "--out", out["e.png"], "--gif", out["e.gif"]])
    for name in ("m.png", "m.gif", "p.png", "p.mp4", "c.png", "e.png", "e.gif"):
        assert (tmp_path / name).stat().st_size > 0, name
    for name in ("m.png", "p.png", "c.png", "e.png"):
        with Image.open(tmp_path / name) as im:
            assert np.asarray(im.convert("RGB")).std() > 10, name

"""World model: environment, trajectory format, AC predictor, training, planners, MPC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from layouts import official_layout

from jepa.world.ac_checkpoint import load_world_model, save_world_model
from jepa.world.ac_predictor import ACPredictor, clean_released_state_dict, create_ac_predictor, frame_causal_mask
from jepa.world.cem import CEMConfig, cem_plan
from jepa.world.collect import collect_random_trajectories, random_episode
from jepa.world.env import PointTableEnv
from jepa.world.frame_encoder import build_frame_encoder
from jepa.world.gradient_planner import GradientPlannerConfig, gradient_plan
from jepa.world.mpc import PlanningPolicy, RandomPolicy, evaluate
from jepa.world.train_ac import TrainACConfig, WindowSampler, encode_dataset, evaluate_losses, train_ac_predictor
from jepa.world.trajectories import Episode, Manifest, TrajectoryWriter, load_manifest, read_episode
from jepa.world.world_model import LatentWorldModel, OracleWorldModel, l1_energy

REPO = Path(__file__).resolve().parents[1]

# A 32 px table: 2 x 2 patches of 16 px, so everything below runs in seconds on one thread.
SMALL_ENV = dict(image_size=32)
TINY_ENCODER = dict(img_size=32, num_frames=1, embed_dim=48, depth=1, num_heads=2)


def tiny_predictor(**kw: object) -> ACPredictor:
    args = dict(embed_dim=48, predictor_embed_dim=32, depth=1, num_heads=2, grid_size=2, action_dim=2, state_dim=2)
    return ACPredictor(**{**args, **kw})


# --- environment ---------------------------------------------------------------------------------
def test_env_is_deterministic_bounded_and_renders_batches() -> None:
    env = PointTableEnv(**SMALL_ENV)
    a, b = random_episode(env, 6, seed=3), random_episode(env, 6, seed=3)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.states, b.states)
    assert not np.array_equal(a.states, random_episode(env, 6, seed=4).states)
    env.reset(state=np.array([0.5, 0.5]))
    assert np.allclose(env.step(np.array([5.0, -5.0])).state, [0.5 + env.max_action, 0.5 - env.max_action])
    for _ in range(20):
        state = env.step(np.array([1.0, 1.0])).state
    assert np.allclose(state, 1.0 - env.wall)
    states = np.array([[0.2, 0.3], [0.7, 0.6]], dtype=np.float32)
    batch = env.render(states)
    assert batch.shape == (2, 32, 32, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[1], env.render(states[1]))
    torch_next = env.transition(torch.from_numpy(states), torch.full((2, 2), 0.3))
    np.testing.assert_allclose(torch_next.numpy(), env.transition(states, np.full((2, 2), 0.3, np.float32)))
    with pytest.raises(ValueError):
        env.step(np.array([np.nan, 0.0]))


# --- trajectory format ---------------------------------------------------------------------------
def test_trajectory_format_round_trip(tmp_path: Path) -> None:
    env = PointTableEnv(**SMALL_ENV)
    extrinsics = np.arange(15, dtype=np.float32).reshape(5, 3)  # e.g. a camera pose per frame
    episodes = [
        Episode(e.frames, e.actions, e.states, extrinsics + s, e.info)
        for s, e in enumerate(random_episode(env, 5, seed=seed) for seed in (1, 2))
    ]
    writer = TrajectoryWriter(tmp_path, fps=4, action_dim=2, state_dim=2, extrinsics_dim=3)
    for ep in episodes:
        writer.add(ep)
    manifest = load_manifest(tmp_path)
    assert (manifest.fps, manifest.action_dim, manifest.state_dim, manifest.extrinsics_dim) == (4, 2, 2, 3)
    assert [r.num_frames for r in manifest.episodes] == [5, 5]
    assert (tmp_path / manifest.episodes[0].video).read_bytes()[4:8] == b"ftyp"  # a real mp4 container
    for ep, record in zip(episodes, manifest.episodes, strict=True):
        back = read_episode(tmp_path, record)
        np.testing.assert_array_equal(back.actions, ep.actions)
        np.testing.assert_array_equal(back.states, ep.states)
        np.testing.assert_array_equal(back.extrinsics, ep.extrinsics)
        assert back.frames.shape == ep.frames.shape and back.frames.dtype == np.uint8
        assert np.abs(back.frames.astype(float) - ep.frames).mean() < 4.0  # H.264 is lossy, but barely
        assert back.info == {"seed": ep.info["seed"]}
    # reopening appends; a writer for other dims refuses the directory
    TrajectoryWriter(tmp_path, fps=4, action_dim=2, state_dim=2, extrinsics_dim=3).add(episodes[0])
    assert len(load_manifest(tmp_path).episodes) == 3
    with pytest.raises(ValueError, match="holds"):
        TrajectoryWriter(tmp_path, fps=4, action_dim=7, state_dim=7, extrinsics_dim=3)


def test_trajectory_format_rejects_bad_input(tmp_path: Path) -> None:
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="actions"):
        Episode(frames, np.zeros((4, 2)), np.zeros((4, 2)))  # one action per transition, not per frame
    with pytest.raises(ValueError, match="states"):
        Episode(frames, np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="dims"):
        TrajectoryWriter(tmp_path, 4, 7, 7).add(Episode(frames, np.zeros((3, 2)), np.zeros((4, 2))))
    with pytest.raises(ValueError, match="format"):
        Manifest.from_json({"format": "something-else", "version": 1})
    with pytest.raises(FileNotFoundError):
        load_manifest(tmp_path / "missing")


# --- AC predictor ----------------------------------------------------------------------------------
def test_frame_causal_mask_lets_frame_t_see_only_frames_up_to_t() -> None:
    mask = frame_causal_mask(num_frames=3, tokens_per_frame=4)
    frame = torch.arange(12) // 4
    for i in range(12):
        for j in range(12):
            assert bool(mask[i, j]) == bool(frame[j] <= frame[i])


def test_predictor_outputs_depend_only_on_past_and_present_frames() -> None:
    predictor = tiny_predictor(init_std=0.3).eval()  # a large init so every influence is visible
    z, a, s = torch.randn(2, 3, 4, 48), torch.randn(2, 3, 2), torch.randn(2, 3, 2)
    out = predictor(z, a, s)
    assert out.shape == (2, 3, 4, 48)
    z2, a2, s2 = z.clone(), a.clone(), s.clone()
    z2[:, 2] += 1.0
    a2[:, 2] += 1.0
    s2[:, 2] += 1.0
    out2 = predictor(z2, a2, s2)
    torch.testing.assert_close(out2[:, :2], out[:, :2])  # frames 0, 1 cannot see frame 2
    assert (out2[:, 2] - out[:, 2]).abs().max() > 1e-2
    a3 = a.clone()
    a3[:, 1] += 1.0  # the action token of frame 1 reaches all patch tokens of frame 1
    out3 = predictor(z, a3, s)
    torch.testing.assert_close(out3[:, 0], out[:, 0])
    assert (out3[:, 1] - out[:, 1]).abs().amax(-1).min() > 1e-5  # every patch token moved
    with pytest.raises(ValueError, match="actions"):
        predictor(z, a[:, :2], s)


def _released_rotate(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The released rotation: frequency table repeated [f, f], channel pairs (2i, 2i+1) rotated."""
    d = x.shape[-1]
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=x.dtype) / (d / 2.0))
    freq = pos[:, None].to(x.dtype) * omega  # (N, d/2)
    sin, cos = freq.sin().repeat(1, 2), freq.cos().repeat(1, 2)
    pairs = x.unflatten(-1, (-1, 2))
    swapped = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return x * cos + swapped * sin


def test_predictor_attention_matches_the_released_ac_rotation() -> None:
    """Patch tokens rotate by (frame, row, col), conditioning tokens by frame only (released ACRoPEAttention)."""
    predictor = tiny_predictor(predictor_embed_dim=48, num_heads=2, init_std=0.3).eval()  # head_dim 24: 8 per axis
    t, k, n = 3, 2, 4
    x = torch.randn(1, t * (k + n), 48)
    attn = predictor.predictor_blocks[0].attn
    pos, axis = predictor._positions(t, k, x.device)
    mask = frame_causal_mask(t, k + n)
    ours = attn(x, pos=pos, attn_mask=mask, axis_mask=axis)

    q, key, v = attn.qkv(x).unflatten(-1, (3, 2, 24)).permute(2, 0, 3, 1, 4)  # (1, heads, N, 24)
    frame = torch.arange(t).repeat_interleave(k + n)
    slot = torch.arange(k + n).repeat(t)
    row, col = (slot - k).clamp(min=0) // 2, (slot - k).clamp(min=0) % 2
    is_patch = slot >= k

    def rotate(y: torch.Tensor) -> torch.Tensor:
        out = y.clone()
        out[..., 0:8] = _released_rotate(y[..., 0:8], frame.float())
        rotated_hw = torch.cat(
            (_released_rotate(y[..., 8:16], row.float()), _released_rotate(y[..., 16:24], col.float())), -1
        )
        out[..., is_patch, 8:24] = rotated_hw[..., is_patch, :]
        return out

    ref = torch.nn.functional.scaled_dot_product_attention(rotate(q), rotate(key), v, attn_mask=mask)
    ref = attn.proj(ref.transpose(1, 2).reshape(1, -1, 48))
    torch.testing.assert_close(ours, ref)


def test_ac_predictor_matches_released_vitg_layout() -> None:
    layout = official_layout()["vjepa2_ac_vitg.predictor"]
    with torch.device("meta"):
        predictor = create_ac_predictor("vjepa2_ac_vitg")
    shapes = {k: list(v.shape) for k, v in predictor.state_dict().items()}
    expected = {
        "predictor_embed.weight": [1024, 1408], "action_encoder.weight": [1024, 7],
        "state_encoder.weight": [1024, 7], "extrinsics_encoder.weight": [1024, 6],
        "predictor_blocks.23.attn.qkv.weight": [3072, 1024], "predictor_blocks.23.mlp.fc1.weight": [4096, 1024],
        "predictor_norm.weight": [1024], "predictor_proj.weight": [1408, 1024],
    }  # fmt: skip
    assert len(shapes) == 300
    assert all(shapes[k] == v for k, v in expected.items())
    full = dict(layout["non_block_keys"])
    for i in range(layout["num_blocks"]):
        full.update({k.replace("blocks.0.", f"blocks.{i}."): v for k, v in layout["block_0_keys"].items()})
    assert shapes == full
    released = {f"module.backbone.{k}": v for k, v in predictor.state_dict().items()}
    assert set(clean_released_state_dict(released)) == set(shapes)


def test_predictor_training_lowers_rollout_loss(tmp_path: Path) -> None:
    env = PointTableEnv(**SMALL_ENV)
    collect_random_trajectories(env, tmp_path, num_episodes=6, num_frames=6, seed=10)
    encoder = build_frame_encoder("vit_tiny", TINY_ENCODER, seed=0)
    episodes = encode_dataset(tmp_path, encoder)
    assert episodes[0].latents.shape == (6, 4, 48)
    sampler = WindowSampler(episodes, num_frames=4, seed=0)
    torch.manual_seed(0)
    predictor = tiny_predictor()
    before = evaluate_losses(predictor, sampler, rollout_steps=2)
    config = TrainACConfig(steps=60, batch_size=8, lr=3e-3, warmup_steps=5, log_every=20)
    history = train_ac_predictor(predictor, sampler, config)
    after = evaluate_losses(predictor, sampler, rollout_steps=2)
    assert after["rollout"] < 0.7 * before["rollout"]
    assert after["tf"] < 0.7 * before["tf"]
    assert history[-1]["step"] == 59
    # the trained model saves and loads back to identical predictions
    saved = save_world_model(
        tmp_path / "wm", predictor, encoder, {"name": "vit_tiny", "overrides": TINY_ENCODER}, env.config
    )
    loaded = load_world_model(saved)
    z, a, s = sampler.batch(2, np.array([0, 1]))
    torch.testing.assert_close(loaded.predictor(z[:, :-1], a, s[:, :-1]), predictor(z[:, :-1], a, s[:, :-1]))
    frames = torch.from_numpy(env.render(np.array([[0.3, 0.4]], np.float32)))
    torch.testing.assert_close(loaded.encoder(frames), encoder(frames))


def test_latent_world_model_rollout_feeds_back_its_predictions() -> None:
    env = PointTableEnv(**SMALL_ENV)
    encoder = build_frame_encoder("vit_tiny", TINY_ENCODER, seed=0)
    predictor = tiny_predictor().eval()
    model = LatentWorldModel(encoder, predictor, env.transition)
    state = torch.tensor([0.4, 0.5])
    z0 = model.encode(env.render(state.numpy())[None])[0]
    actions = torch.rand(5, 2, 2) * 0.2 - 0.1
    with torch.no_grad():
        rolled = model.rollout(z0, state, actions)
        assert rolled.shape == (5, 2, 4, 48)
        first = model.predict_next(z0.expand(5, 1, 4, 48), actions[:, :1], state.expand(5, 1, 2))
        torch.testing.assert_close(rolled[:, 0], first)
        s1 = env.transition(state.expand(5, 2), actions[:, 0])
        second = model.predict_next(
            torch.stack((z0.expand(5, 4, 48), first), 1), actions, torch.stack((state.expand(5, 2), s1), 1)
        )
        torch.testing.assert_close(rolled[:, 1], second)


def test_gradient_planning_differentiates_through_the_latent_model() -> None:
    env = PointTableEnv(**SMALL_ENV)
    model = LatentWorldModel(
        build_frame_encoder("vit_tiny", TINY_ENCODER), tiny_predictor(init_std=0.3), env.transition
    )
    start, goal = env.sample_task(0)
    latent = model.encode(env.render(start)[None])[0]
    goal_latent = model.encode(env.render(goal)[None])[0]

    def energy(actions: torch.Tensor) -> torch.Tensor:
        return l1_energy(model.rollout(latent, torch.from_numpy(start), actions)[:, -1], goal_latent)

    config = GradientPlannerConfig(horizon=2, num_starts=4, steps=10, action_bound=env.max_action)
    result = gradient_plan(energy, 2, config, generator=torch.Generator().manual_seed(0))
    assert result.actions.abs().max() <= env.max_action
    assert result.energy == min(result.energy_history)
    actions = torch.zeros(1, 2, 2, requires_grad=True)
    energy(actions).sum().backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0  # the energy reaches the actions
    assert all(p.grad is None for p in model.predictor.parameters())  # and only them


# --- planners --------------------------------------------------------------------------------------
def _quadratic() -> tuple[torch.Tensor, object]:
    target = torch.tensor([[0.03, -0.02, 0.01], [-0.01, 0.04, 0.0]])
    return target, lambda a: ((a - target) ** 2).sum((1, 2))


def test_cem_finds_the_optimum_of_a_quadratic_energy() -> None:
    target, energy = _quadratic()
    config = CEMConfig(horizon=2, num_samples=200, num_elites=10, iterations=25, momentum_std=0.5)
    result = cem_plan(energy, 3, config, generator=torch.Generator().manual_seed(0))
    assert (result.actions - target).abs().max() < 2e-3
    assert result.energy < 1e-5 and result.energy_history[-1] < result.energy_history[0]
    # the optimum is outside the bounds: CEM returns the closest point inside them
    outside = torch.full((2, 3), 0.2)
    clipped = cem_plan(
        lambda a: ((a - outside) ** 2).sum((1, 2)), 3, config, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(clipped.actions, torch.full((2, 3), config.action_bound), atol=2e-3)
    with pytest.raises(ValueError):
        CEMConfig(num_samples=5, num_elites=10)


def test_gradient_planner_finds_the_optimum_of_a_quadratic_energy() -> None:
    target, energy = _quadratic()
    result = gradient_plan(energy, 3, GradientPlannerConfig(horizon=2), generator=torch.Generator().manual_seed(0))
    assert (result.actions - target).abs().max() < 2e-3


def test_planning_with_a_perfect_model_reaches_the_goal() -> None:
    env = PointTableEnv(**SMALL_ENV)
    config = CEMConfig(horizon=2, num_samples=48, num_elites=6, iterations=4, action_bound=env.max_action)
    policy = PlanningPolicy(OracleWorldModel(env), env.action_dim, config, energy="sum")
    seeds = [0, 1, 2]
    planned = evaluate(env, policy, seeds, max_steps=12)
    assert planned.success_rate == 1.0
    assert len(policy.plan_seconds) == 36
    randomly = evaluate(env, RandomPolicy(env.action_dim, env.max_action), seeds, max_steps=12)
    assert randomly.mean_final_distance > 3 * planned.mean_final_distance


# --- configs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["collect", "train_ac", "plan"])
def test_world_configs_compose(name: str) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs" / "world"), version_base=None):
        cfg = compose(config_name=name)
    PointTableEnv(**cfg.env)
    if name == "plan":
        CEMConfig(**cfg.cem)
        GradientPlannerConfig(**cfg.gradient)
    if name == "train_ac":
        TrainACConfig(**cfg.train)
        create_ac_predictor(cfg.predictor.name, **cfg.predictor.overrides)

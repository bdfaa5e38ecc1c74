"""The three world-model jobs (collect, train the AC predictor, plan) as functions of a config.

The Hydra tools in tools/ and the benchmark call these, so the CLI and the benchmark run the
same code. Configs are plain mappings (a Hydra DictConfig works): see configs/world/*.yaml.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from jepa.viz.plan import episode_from_result, render_plan_animation, render_plan_strip
from jepa.viz.render import save_gif, save_png
from jepa.world.ac_checkpoint import load_world_model, save_world_model
from jepa.world.ac_predictor import create_ac_predictor
from jepa.world.cem import CEMConfig
from jepa.world.collect import collect_random_trajectories
from jepa.world.env import PointTableEnv
from jepa.world.frame_encoder import build_frame_encoder
from jepa.world.gradient_planner import GradientPlannerConfig
from jepa.world.mpc import EvalSummary, PlanningPolicy, RandomPolicy, evaluate
from jepa.world.train_ac import TrainACConfig, WindowSampler, encode_dataset, evaluate_losses, train_ac_predictor
from jepa.world.world_model import LatentWorldModel, OracleWorldModel

log = logging.getLogger(__name__)


def _plain(cfg: Any) -> Any:
    """A Hydra DictConfig (or any mapping) as plain dicts/lists, for dataclasses and JSON."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # omegaconf is a dependency, but the functions work without it
        pass
    return cfg


def machine_info() -> dict[str, Any]:
    """What benchmark figures must be reported with (design §5)."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            # other processes compete for the same cores; timings only compare at similar load
            "load_average_1m": os.getloadavg()[0]}  # fmt: skip


def run_collect(cfg: Mapping[str, Any]) -> dict[str, Any]:
    cfg = _plain(cfg)
    env = PointTableEnv(**cfg["env"])
    start = time.perf_counter()
    manifest = collect_random_trajectories(
        env, cfg["out_dir"], cfg["num_episodes"], cfg["num_frames"], seed=cfg["seed"], fps=cfg["fps"]
    )
    seconds = time.perf_counter() - start
    log.info("collected %d episodes into %s in %.1f s", len(manifest.episodes), cfg["out_dir"], seconds)
    return {"episodes": len(manifest.episodes), "seconds": seconds}


def run_train_ac(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Encode the dataset with the frozen encoder, train the AC predictor, save both."""
    cfg = _plain(cfg)
    torch.set_num_threads(cfg["threads"])
    env = PointTableEnv(**cfg["env"])
    train_cfg = TrainACConfig(**cfg["train"])  # bad keys fail here, before minutes of encoding
    pred_name, pred_overrides = cfg["predictor"]["name"], cfg["predictor"].get("overrides", {})
    with torch.device("meta"):  # checks name and overrides without allocating the weights
        create_ac_predictor(pred_name, **pred_overrides)
    enc_spec = cfg["encoder"]
    encoder = build_frame_encoder(
        enc_spec.get("name", "vit_tiny"), enc_spec.get("overrides"), enc_spec.get("seed", 0),
        enc_spec.get("checkpoint"), enc_spec.get("which", "target_encoder"),
    )  # fmt: skip
    t0 = time.perf_counter()
    episodes = encode_dataset(cfg["data_dir"], encoder)
    encode_seconds = time.perf_counter() - t0
    n_val = cfg["val_episodes"]
    if not 0 < n_val < len(episodes):
        raise ValueError(f"val_episodes must be in (0, {len(episodes)}), got {n_val}")
    side = env.image_size // encoder.encoder.patch_size
    num_tokens, embed_dim = episodes[0].latents.shape[-2:]
    if side * side != num_tokens:
        raise ValueError(f"frames give {num_tokens} tokens, env.image_size={env.image_size} means {side}x{side}: "
                         "train with the env config the data was collected with")  # fmt: skip
    train = WindowSampler(episodes[:-n_val], train_cfg.num_frames, seed=train_cfg.seed)
    val = WindowSampler(episodes[-n_val:], train_cfg.num_frames, seed=train_cfg.seed)
    torch.manual_seed(train_cfg.seed)
    # Sizes that must agree with the encoder and the environment are derived, not configured.
    derived = {"embed_dim": embed_dim, "grid_size": (side, side), "action_dim": env.action_dim,
               "state_dim": env.state_dim}  # fmt: skip
    predictor = create_ac_predictor(pred_name, **{**derived, **pred_overrides})
    before = evaluate_losses(predictor, val, train_cfg.rollout_steps)
    t0 = time.perf_counter()
    history = train_ac_predictor(predictor, train, train_cfg)
    train_seconds = time.perf_counter() - t0
    after = evaluate_losses(predictor, val, train_cfg.rollout_steps)
    log.info("val losses before %s after %s; encode %.1f s, train %.1f s", before, after, encode_seconds, train_seconds)
    result = {"val_before": before, "val_after": after, "encode_seconds": encode_seconds,
              "train_seconds": train_seconds, "history": history}  # fmt: skip
    extra = {"train": cfg["train"], "data_dir": str(cfg["data_dir"]), "result": result}
    save_world_model(cfg["out_dir"], predictor, encoder, enc_spec, env.config, extra=extra)
    return result


def _planner_config(cfg: Mapping[str, Any]) -> CEMConfig | GradientPlannerConfig:
    if cfg["planner"] == "cem":
        return CEMConfig(**cfg["cem"])
    if cfg["planner"] == "gradient":
        return GradientPlannerConfig(**cfg["gradient"])
    raise ValueError(f"planner must be 'cem' or 'gradient', got {cfg['planner']!r}")


def _summary(s: EvalSummary) -> dict[str, Any]:
    return {"success_rate": s.success_rate, "mean_final_distance": s.mean_final_distance,
            "seconds_per_plan_median": s.seconds_per_plan_median, "seconds_per_plan_mean": s.seconds_per_plan_mean,
            "final_distances": [round(e.final_distance, 4) for e in s.episodes]}  # fmt: skip


def run_plan(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Plan to image goals over seeded episodes; compare with random actions; save a picture."""
    cfg = _plain(cfg)
    torch.set_num_threads(cfg["threads"])
    out_dir = Path(cfg["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg["oracle"]:
        env = PointTableEnv(**{**cfg.get("env", {}), **cfg["env_overrides"]})
        model = OracleWorldModel(env)
    else:
        loaded = load_world_model(cfg["model_dir"])
        env = PointTableEnv(**{**loaded.meta["env"], **cfg["env_overrides"]})
        model = LatentWorldModel(loaded.encoder, loaded.predictor, env.transition)
    seeds = list(range(cfg["first_seed"], cfg["first_seed"] + cfg["episodes"]))
    planner_cfg = _planner_config(cfg)
    policy = PlanningPolicy(model, env.action_dim, planner_cfg, energy=cfg["energy"], warm_start=cfg["warm_start"])
    t0 = time.perf_counter()
    planned = evaluate(env, policy, seeds, cfg["max_steps"])
    results: dict[str, Any] = {
        "planner": cfg["planner"], "planner_config": asdict(planner_cfg), "energy": cfg["energy"],
        "oracle": cfg["oracle"], "seeds": seeds, "max_steps": cfg["max_steps"], "success_tol": env.success_tol,
        "planned": _summary(planned), "plan_wall_seconds": time.perf_counter() - t0, **machine_info(),
    }  # fmt: skip
    log.info("%s: success %.2f, mean final distance %.3f, %.3f s per plan (median)", cfg["planner"],
             planned.success_rate, planned.mean_final_distance, planned.seconds_per_plan_median)  # fmt: skip
    if cfg["baseline_random"]:
        rand = evaluate(env, RandomPolicy(env.action_dim, env.max_action), seeds, cfg["max_steps"])
        results["random"] = _summary(rand)
        log.info("random: success %.2f, mean final distance %.3f", rand.success_rate, rand.mean_final_distance)
    if cfg["save_episode"] is not None:
        if not 0 <= cfg["save_episode"] < len(planned.episodes):
            raise ValueError(f"save_episode={cfg['save_episode']} but only {len(planned.episodes)} episodes ran")
        episode = planned.episodes[cfg["save_episode"]]
        picture = episode_from_result(episode)
        save_png(render_plan_strip(picture, scale=2), out_dir / "plan_episode.png")
        save_gif(render_plan_animation(picture), out_dir / "plan_episode.gif")
        results["saved_episode_seed"] = episode.seed
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results

"""Plan to image goals in the table environment with a trained world model (CEM, MPC).

    python tools/plan.py                                      # runs/world/ac, 20 seeded episodes
    python tools/plan.py planner=gradient episodes=5
    python tools/plan.py oracle=true                          # true dynamics: the planner's ceiling

Reports success rate and seconds per planning step, against random actions on the same seeds;
writes results.json, plan_episode.png and plan_episode.gif to out_dir.
Config: configs/world/plan.yaml.
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from jepa.world.pipeline import run_plan


@hydra.main(config_path="../configs/world", config_name="plan", version_base=None)
def main(cfg: DictConfig) -> None:
    results = run_plan(cfg)
    summary = {k: results[k] for k in ("planner", "energy", "max_steps", "success_tol", "torch", "threads", "machine")}
    summary["planned"] = {k: v for k, v in results["planned"].items() if k != "final_distances"}
    if "random" in results:
        summary["random"] = {k: v for k, v in results["random"].items() if k != "final_distances"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

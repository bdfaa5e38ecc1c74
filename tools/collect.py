"""Collect random-action episodes from the bundled table environment (trajectory format).

    python tools/collect.py                                   # 200 x 16 frames -> runs/world/data
    python tools/collect.py out_dir=/tmp/data num_episodes=20 env.image_size=128

Config: configs/world/collect.yaml. Format: docs/world_model.md.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from jepa.world.pipeline import run_collect


@hydra.main(config_path="../configs/world", config_name="collect", version_base=None)
def main(cfg: DictConfig) -> None:
    run_collect(cfg)


if __name__ == "__main__":
    main()

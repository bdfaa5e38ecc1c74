"""Train the action-conditioned predictor (V-JEPA 2-AC) on a frozen encoder's latents.

    python tools/train_ac.py                                  # runs/world/data -> runs/world/ac
    python tools/train_ac.py data_dir=/tmp/data out_dir=/tmp/ac train.steps=100 threads=4

Config: configs/world/train_ac.yaml. Saves predictor, encoder and world_model.json to out_dir.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from jepa.world.pipeline import run_train_ac


@hydra.main(config_path="../configs/world", config_name="train_ac", version_base=None)
def main(cfg: DictConfig) -> None:
    run_train_ac(cfg)


if __name__ == "__main__":
    main()

"""Read models from our training runs: a run directory or one checkpoint directory.

Only `model.safetensors` and `config.yaml` are read; `train_state.pt` (optimizer, RNG) is
not needed to use the models. The models are built with the same `build_encoder` /
`build_predictor` the training used (on the meta device, so nothing is initialised), which
keeps the config -> architecture mapping in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from jepa.checkpoint_files import CheckpointMismatchError, read_safetensors
from jepa.export.raw import RawCheckpoint
from jepa.train.checkpoint import CKPT_DIRNAME, CONFIG_FILE, MODEL_FILE, find_latest, split_prefixed


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CKPT_DIRNAME).is_dir()


def is_training_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file()


def model_configs(model_cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(encoder kwargs, predictor kwargs) of the `model:` section of a resolved training config."""
    from jepa.train.build import build_encoder, build_predictor
    from jepa.train.config import ModelConfig

    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), model_cfg)
    with torch.device("meta"):
        encoder = build_encoder(merged)
        predictor = build_predictor(merged, encoder)
    return dict(encoder.config), dict(predictor.config)


def read_training(path: str | Path) -> RawCheckpoint:
    """Read the latest checkpoint of a run directory, or the given checkpoint directory."""
    path = Path(path)
    if is_run_dir(path) and not is_training_checkpoint(path):
        latest = find_latest(path)
        if latest is None:
            raise FileNotFoundError(f"{path}: run directory without a complete checkpoint under {CKPT_DIRNAME}/")
        path = latest
    if not is_training_checkpoint(path):
        raise FileNotFoundError(f"{path}: needs {MODEL_FILE} and {CONFIG_FILE}")
    cfg = OmegaConf.load(path / CONFIG_FILE)
    if "model" not in cfg:
        raise CheckpointMismatchError(f"{path / CONFIG_FILE} has no 'model:' section")
    enc_cfg, pred_cfg = model_configs(cfg.model)
    states = split_prefixed(read_safetensors(path / MODEL_FILE))
    unknown = sorted(set(states) - {"encoder", "target_encoder", "predictor"})
    if unknown:
        raise CheckpointMismatchError(f"{path / MODEL_FILE}: unexpected model prefixes {unknown}")
    return RawCheckpoint("training", str(path), states, enc_cfg, pred_cfg if "predictor" in states else None)

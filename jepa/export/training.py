"""Read models from our training runs: a run directory or one checkpoint directory.

Only `model.safetensors` and `config.yaml` are read; `train_state.pt` (optimizer, RNG) is
not needed to use the models. Their Args come from the same `encoder_args` / `predictor_args`
the training used, which keeps the config -> architecture mapping in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from jepa.checkpoint_files import CheckpointMismatchError, read_safetensors
from jepa.export.raw import RawCheckpoint
from jepa.models.args import EncoderArgs, PredictorArgs
from jepa.train.checkpoint import CKPT_DIRNAME, CONFIG_FILE, MODEL_FILE, find_latest, split_prefixed
from jepa.train.forecast import FORECAST_PREFIX


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CKPT_DIRNAME).is_dir()


def is_training_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file()


def model_args(model_cfg: Any) -> tuple[EncoderArgs, PredictorArgs]:
    """(encoder, predictor) Args of the `model:` section of a resolved training config."""
    from jepa.train.build import encoder_args, predictor_args
    from jepa.train.config import ModelConfig, upgrade_model_section

    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), upgrade_model_section(model_cfg))
    encoder = encoder_args(merged)
    return encoder, predictor_args(merged, encoder)


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
    enc_cfg, pred_cfg = model_args(cfg.model)
    states = split_prefixed(read_safetensors(path / MODEL_FILE))
    states.pop(FORECAST_PREFIX, None)  # a training-only head: nothing downstream runs it
    unknown = sorted(set(states) - {"encoder", "target_encoder", "predictor"})
    if unknown:
        raise CheckpointMismatchError(f"{path / MODEL_FILE}: unexpected model prefixes {unknown}")
    return RawCheckpoint("training", str(path), states, enc_cfg, pred_cfg if "predictor" in states else None)

"""Save and load a trained world model: AC predictor, how to rebuild its frozen encoder, the env.

    out_dir/
      predictor.safetensors   the AC predictor's weights
      encoder.safetensors     the frozen encoder's weights, when it was built from the registry
                              (so a randomly initialised one is reproduced bit for bit); an
                              encoder loaded from a checkpoint is reloaded from that path instead
      world_model.json        {"predictor": ACPredictorArgs, "encoder": {"name", "overrides",
                               "seed", "checkpoint", "which"}, "env": env kwargs, "train": {...}}

Written to a temporary directory and renamed, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from jepa.atomic import atomic_dir
from jepa.checkpoint_files import read_json, read_safetensors
from jepa.export.state import load_state
from jepa.models.args import ACPredictorArgs
from jepa.world.ac_predictor import ACPredictor
from jepa.world.frame_encoder import FrameEncoder, build_frame_encoder

META_NAME = "world_model.json"


@dataclass
class LoadedWorldModel:
    encoder: FrameEncoder
    predictor: ACPredictor
    meta: dict[str, Any]


def save_world_model(
    out_dir: str | Path,
    predictor: ACPredictor,
    encoder: FrameEncoder,
    encoder_spec: dict[str, Any],
    env_config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the directory described above; replaces an existing one."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_file({k: v.contiguous() for k, v in predictor.state_dict().items()}, str(tmp / "predictor.safetensors"))
        if encoder_spec.get("checkpoint") is None:
            state = {k: v.contiguous() for k, v in encoder.encoder.state_dict().items()}
            save_file(state, str(tmp / "encoder.safetensors"))
        meta = {"predictor": predictor.config, "encoder": encoder_spec, "env": env_config, **(extra or {})}
        (tmp / META_NAME).write_text(json.dumps(meta, indent=1))
    return out_dir


def load_world_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedWorldModel:
    """Rebuild encoder and predictor from a directory written by `save_world_model`."""
    path = Path(path)
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise FileNotFoundError(f"no {META_NAME} in {path}: not a saved world model (run tools/train_ac.py)")
    meta = read_json(meta_path)
    spec = meta["encoder"]
    weights = path / "encoder.safetensors"
    encoder = build_frame_encoder(
        spec.get("name", "vit_tiny"), spec.get("overrides"), spec.get("seed", 0), spec.get("checkpoint"),
        spec.get("which", "target_encoder"), read_safetensors(weights) if weights.is_file() else None,
    )  # fmt: skip
    predictor = ACPredictor(ACPredictorArgs.from_dict(meta["predictor"]))
    load_state(predictor, read_safetensors(path / "predictor.safetensors"), strict=True, what="AC predictor")
    return LoadedWorldModel(encoder.to(device), predictor.to(device).eval(), meta)

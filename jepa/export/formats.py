"""Our exported format: a directory with `config.json` + `model.safetensors`.

`config.json` holds the Args of the encoder (and optionally the predictor) as dicts,
so `jepa.load_encoder(dir)` rebuilds the model with no training code, no Hydra and no
pickle. Tensors live in one safetensors file under the prefixes `encoder.` and
`predictor.`. Training-only settings (drop path, activation checkpointing) are reset, since
an exported encoder is for frozen use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from jepa.atomic import atomic_file, write_text_atomic
from jepa.checkpoint_files import CheckpointMismatchError, read_json, read_safetensors
from jepa.export.raw import RawCheckpoint
from jepa.models.args import EncoderArgs, ModelArgs, PredictorArgs

FORMAT = "jepa-export"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_INFERENCE_ONLY = {"drop_path_rate": 0.0, "use_activation_checkpointing": False}


def _jsonable(args: ModelArgs) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.replace(**_INFERENCE_ONLY).as_dict().items()}


def save_exported(
    directory: str | Path,
    encoder_state: Mapping[str, Tensor],
    encoder_config: EncoderArgs | Mapping[str, Any],
    predictor_state: Mapping[str, Tensor] | None = None,
    predictor_config: PredictorArgs | Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write an encoder (and optionally its predictor) in our exported format; configs are
    Args or their dicts (`model.config`)."""
    from jepa import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"encoder.{k}": v for k, v in encoder_state.items()}
    if predictor_state is not None:
        if predictor_config is None:
            raise ValueError("predictor_state needs predictor_config")
        tensors.update({f"predictor.{k}": v for k, v in predictor_state.items()})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jepa_version": __version__,
        "encoder": _jsonable(EncoderArgs.of(encoder_config)),
        "predictor": _jsonable(PredictorArgs.of(predictor_config)) if predictor_state is not None else None,
        "meta": dict(meta or {}),
    }
    with atomic_file(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    write_text_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return directory


def is_exported_dir(directory: str | Path) -> bool:
    """True for a directory whose config.json declares our export format (a damaged config.json
    raises, naming the file, rather than reading as "some other format")."""
    cfg = Path(directory) / CONFIG_FILE
    if not cfg.is_file():
        return False
    config = read_json(cfg)
    return isinstance(config, dict) and config.get("format") == FORMAT


def read_exported(directory: str | Path) -> RawCheckpoint:
    """Read a directory written by `save_exported`."""
    directory = Path(directory)
    config = read_json(directory / CONFIG_FILE)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointMismatchError(f"{directory}: export format version {version}, this jepa reads {FORMAT_VERSION}")
    states: dict[str, dict[str, Tensor]] = {}
    for key, value in read_safetensors(directory / WEIGHTS_FILE).items():
        role, _, name = key.partition(".")
        states.setdefault(role, {})[name] = value
    unknown = sorted(set(states) - {"encoder", "predictor"})
    if unknown:
        raise CheckpointMismatchError(
            f"{directory}: unexpected tensor prefixes {unknown} (expected encoder., predictor.)"
        )
    if "encoder" not in states:
        raise CheckpointMismatchError(f"{directory}: no encoder.* tensors in {WEIGHTS_FILE}")
    pred = config.get("predictor")
    return RawCheckpoint(
        "exported", str(directory), states, EncoderArgs.from_dict(config["encoder"]),
        PredictorArgs.from_dict(pred) if pred else None,
    )  # fmt: skip

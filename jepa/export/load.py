"""The public loading entry: `load_encoder`, `load_predictor`, `load_models` from any source.

Sources, detected from the path:

- our training run directory (`<run>/checkpoints/latest`) or one checkpoint directory
  (`model.safetensors` with `encoder.`/`predictor.`/`target_encoder.` prefixes + `config.yaml`);
- our exported directory (`config.json` with format `jepa-export` + `model.safetensors`);
- an HF transformers `VJEPA2Model` directory (`config.json` with model_type `vjepa2`);
- an official V-JEPA 1 / 2 `.pt` file (or a bare state dict `.pt` / `.safetensors`);
- an `http(s)://` or `file://` URL to a file, cached under `torch.hub.get_dir()/checkpoints`.

Models are built on the meta device and their tensors assigned from the checkpoint, so a
ViT-g loads without first being randomly initialised. Strict by default: any missing,
unexpected or wrongly-shaped tensor raises with the full list; `strict=False` loads what fits
and warns loudly. Nothing is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from jepa.export.formats import is_exported_dir, read_exported
from jepa.export.hf import is_hf_dir, read_hf
from jepa.export.official import read_official
from jepa.export.raw import ENCODER_ROLES, ROLES, RawCheckpoint
from jepa.export.state import CheckpointMismatchError, LoadReport, compare_state, load_state
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer

log = logging.getLogger(__name__)
Source = str | os.PathLike


@dataclass
class LoadedModels:
    """Models found in a source, in eval mode; roles absent from the source are None."""

    format: str
    source: str
    encoder: VisionTransformer | None = None
    target_encoder: VisionTransformer | None = None
    predictor: VisionTransformerPredictor | None = None
    notes: list[str] = field(default_factory=list)
    reports: list[LoadReport] = field(default_factory=list)


def fetch(url: str) -> Path:
    """Download a URL once into the torch hub cache and return the local file."""
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot name a cache file for URL {url!r}")
    target = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=True)
    return target


def _is_training_source(path: Path) -> bool:
    """A run directory (`checkpoints/`) or one checkpoint (`model.safetensors` + `config.yaml`)."""
    return (path / "checkpoints").is_dir() or (
        (path / "model.safetensors").is_file() and (path / "config.yaml").is_file()
    )


def read_source(
    source: Source,
    encoder_kwargs: Mapping[str, Any] | None = None,
    predictor_kwargs: Mapping[str, Any] | None = None,
) -> RawCheckpoint:
    """Detect the format of `source` and read it into our names (no models are built)."""
    text = os.fspath(source)
    path = fetch(text) if text.startswith(("http://", "https://", "file://")) else Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if path.is_file() and path.name == "model.safetensors" and (path.parent / "config.json").is_file():
        path = path.parent
    if path.is_dir():
        if is_exported_dir(path):
            raw = read_exported(path)
        elif is_hf_dir(path):
            raw = read_hf(path)
        elif _is_training_source(path):
            from jepa.export.training import read_training  # needs the training code: imported only here

            raw = read_training(path)
        else:
            raise CheckpointMismatchError(
                f"{path}: not a jepa run/checkpoint directory (checkpoints/ or model.safetensors + config.yaml), "
                "an exported directory (config.json format 'jepa-export') "
                "or an HF VJEPA2 directory (model_type 'vjepa2')"
            )
        _apply_overrides(raw, encoder_kwargs, predictor_kwargs)
        return raw
    return read_official(path, encoder_kwargs, predictor_kwargs)


def _apply_overrides(
    raw: RawCheckpoint, encoder_kwargs: Mapping[str, Any] | None, predictor_kwargs: Mapping[str, Any] | None
) -> None:
    raw.encoder_args = raw.encoder_args.replace(**(encoder_kwargs or {}))
    if raw.predictor_args is not None:
        raw.predictor_args = raw.predictor_args.replace(**(predictor_kwargs or {}))


def _as_float(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def instantiate(
    factory: Callable[[], nn.Module], state: Mapping[str, Tensor], strict: bool, what: str
) -> tuple[nn.Module, LoadReport]:
    """Build with `factory` and fill from `state`; meta-device build when everything fits."""
    with torch.device("meta"):
        shell = factory()
    report = compare_state(shell.state_dict(), state, what)
    if report.ok:
        shell.load_state_dict(_as_float(state), strict=True, assign=True)
        if not any(t.is_meta for t in (*shell.parameters(), *shell.buffers())):
            return shell, report
    module = factory()
    return module, load_state(module, _as_float(state), strict=strict, what=what)


def _finish(module: nn.Module, device: str | torch.device | None, dtype: torch.dtype | None) -> nn.Module:
    module.to(device=device, dtype=dtype)
    return module.eval()


def build_models(
    raw: RawCheckpoint,
    roles: tuple[str, ...] = ROLES,
    strict: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModels:
    """Build and fill the models of `roles` that `raw` holds; absent roles stay None."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {ROLES}")
    out = LoadedModels(raw.format, raw.source, notes=list(raw.notes))
    for role in roles:
        if role not in raw.states:
            continue
        if role in ENCODER_ROLES:
            factory: Callable[[], nn.Module] = lambda: VisionTransformer(raw.encoder_args)  # noqa: E731
        else:
            if raw.predictor_args is None:
                raise CheckpointMismatchError(f"{raw.source}: predictor weights without a predictor config")
            factory = lambda: VisionTransformerPredictor(raw.predictor_args)  # noqa: E731
        model, report = instantiate(factory, raw.states[role], strict, f"{role} from {raw.source}")
        out.reports.append(report)
        setattr(out, role, _finish(model, device, dtype))
    for note in out.notes:
        log.info("%s: %s", raw.source, note)
    return out


def load_models(
    source: Source,
    *,
    roles: tuple[str, ...] = ROLES,
    strict: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    encoder_kwargs: Mapping[str, Any] | None = None,
    predictor_kwargs: Mapping[str, Any] | None = None,
) -> LoadedModels:
    """Load every model of `roles` that `source` holds ("target_encoder", "encoder", "predictor").

    `encoder_kwargs` / `predictor_kwargs` replace fields of the stored or inferred
    EncoderArgs / PredictorArgs (e.g. `num_heads`, `img_size`, `num_frames` for an official `.pt`).
    """
    raw = read_source(source, encoder_kwargs, predictor_kwargs)
    return build_models(raw, roles, strict, device, dtype)


def load_encoder(
    source: Source,
    *,
    which: str = "target_encoder",
    strict: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **encoder_kwargs: Any,
) -> VisionTransformer:
    """Load one encoder in eval mode: the EMA `target_encoder` by default (falling back to
    `encoder` where a source has no target encoder, e.g. exported or HF), or `which="encoder"`.

    Keyword arguments override the stored or inferred `VisionTransformer` arguments.
    """
    if which not in ENCODER_ROLES:
        raise ValueError(f"which must be one of {ENCODER_ROLES}, got {which!r}")
    raw = read_source(source, encoder_kwargs)
    role, _ = raw.encoder_state(which)
    if role != which and raw.format in ("training", "official"):
        log.warning("%s has no %s; loading its %s instead", raw.source, which, role)
    return cast(VisionTransformer, getattr(build_models(raw, (role,), strict, device, dtype), role))


def load_predictor(
    source: Source,
    *,
    strict: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    encoder_kwargs: Mapping[str, Any] | None = None,
    **predictor_kwargs: Any,
) -> VisionTransformerPredictor:
    """Load the predictor of a source in eval mode (KeyError if it has none)."""
    raw = read_source(source, encoder_kwargs, predictor_kwargs)
    if "predictor" not in raw.states:
        raise KeyError(f"{raw.source} holds no predictor weights (it has {sorted(raw.states)})")
    return cast(VisionTransformerPredictor, build_models(raw, ("predictor",), strict, device, dtype).predictor)

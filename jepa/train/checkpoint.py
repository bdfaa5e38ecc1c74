"""Atomic training checkpoints and exact-resume state.

Layout of one save (``<run_dir>/checkpoints/step_00000100/``):

- ``model.safetensors``: every model's weights under a named prefix
  (``encoder.``, ``predictor.``, ``target_encoder.``), readable without unpickling;
- ``train_state.pt``: optimizer, step, RNG states, data position; only tensors and plain
  Python values so it loads with ``torch.load(..., weights_only=True)``;
- ``config.yaml``: the resolved Hydra config; ``meta.json``: step, time, versions.

A save is written into a hidden temporary directory and renamed into place only when every
file is flushed, then ``checkpoints/latest`` (a one-line text file) is replaced atomically. A
process killed mid-save therefore leaves the previous checkpoint as ``latest`` and only a
temporary directory that loading ignores and the next save removes.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from jepa.atomic import STAGING_PREFIX, atomic_dir, write_text_atomic
from jepa.checkpoint_files import CheckpointMismatchError, load_torch_file, read_json, read_safetensors

CKPT_DIRNAME = "checkpoints"
LATEST = "latest"
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"
log = logging.getLogger(__name__)

# (weights by prefix, train state, meta) of one save.
Contents = tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], dict[str, Any]]


def _flat_state(models: Mapping[str, nn.Module | Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for prefix, part in models.items():
        state = part.state_dict() if isinstance(part, nn.Module) else part
        for k, v in state.items():
            flat[f"{prefix}.{k}"] = v.detach().to("cpu").contiguous().clone()
    return flat


def split_prefixed(flat: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{"encoder.blocks.0...": t}`` -> ``{"encoder": {"blocks.0...": t}}``."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in flat.items():
        prefix, _, rest = k.partition(".")
        out.setdefault(prefix, {})[rest] = v
    return out


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors / plain values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_dirname(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    models: Mapping[str, nn.Module | Mapping[str, torch.Tensor]],
    train_state: Mapping[str, Any],
    config_yaml: str,
    meta: Mapping[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write one checkpoint atomically, point ``latest`` at it and prune old ones.

    `models` maps each prefix to a module or to its state dict (e.g. gathered from shards)."""
    ckpt_root = Path(run_dir) / CKPT_DIRNAME
    ckpt_root.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_root.glob(STAGING_PREFIX + "*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    final = ckpt_root / step_dirname(step)
    with atomic_dir(final) as tmp:
        save_file(_flat_state(models), str(tmp / MODEL_FILE), metadata={"format": "jepa", "step": str(step)})
        _write_train_state(tmp / STATE_FILE, dict(train_state))
        (tmp / CONFIG_FILE).write_text(config_yaml)
        full_meta = {
            "step": step,
            "time": time.time(),
            "torch": torch.__version__,
            "models": sorted(models),
            **(dict(meta) if meta else {}),
        }
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2))
    write_text_atomic(ckpt_root / LATEST, final.name + "\n")
    _prune(ckpt_root, keep_last)
    return final


def _write_train_state(path: Path, state: dict[str, Any]) -> None:
    torch.save(state, path)


def _prune(ckpt_root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    for old in _complete(ckpt_root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def _complete(ckpt_root: Path) -> list[Path]:
    """Every complete save under a checkpoints directory, oldest first."""
    return sorted(p for p in ckpt_root.glob("step_*") if _is_complete(p))


def _is_complete(path: Path) -> bool:
    return all((path / f).is_file() for f in (MODEL_FILE, STATE_FILE, META_FILE))


def find_latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None.

    Trusts ``latest`` when it names a complete save; otherwise falls back to the newest
    complete ``step_*`` directory (a crash between rename and pointer update).
    """
    ckpt_root = Path(run_dir) / CKPT_DIRNAME
    if not ckpt_root.is_dir():
        return None
    pointer = ckpt_root / LATEST
    if pointer.is_file():
        candidate = ckpt_root / pointer.read_text().strip()
        if candidate.name and _is_complete(candidate):
            return candidate
    done = _complete(ckpt_root)
    return done[-1] if done else None


def load_checkpoint(path: str | Path) -> Contents:
    """Read a checkpoint directory: (weights by prefix, train state, meta). Never unpickles code."""
    path = Path(path)
    if not _is_complete(path):
        missing = [f for f in (MODEL_FILE, STATE_FILE, META_FILE) if not (path / f).is_file()]
        raise FileNotFoundError(f"{path} is not a complete jepa checkpoint: missing {missing}")
    weights = split_prefixed(read_safetensors(path / MODEL_FILE))
    state = load_torch_file(path / STATE_FILE)
    meta = read_json(path / META_FILE)
    return weights, state, meta


def load_for_resume(run_dir: str | Path, ckpt: Path) -> Contents:
    """`load_checkpoint` for resuming a run: a save whose files cannot be read (disk corruption;
    saves themselves are atomic) is refused with the way back to an older one, and nothing in
    the run directory is touched, so no good checkpoint is pruned or overwritten meanwhile."""
    try:
        return load_checkpoint(ckpt)
    except CheckpointMismatchError as err:
        older = [p for p in _complete(Path(run_dir) / CKPT_DIRNAME) if p != ckpt]
        if older:
            hint = f"Move {ckpt} out of {ckpt.parent} and run again to resume from {older[-1].name}"
        else:
            hint = "No older complete checkpoint exists: start a new run_dir (or trainer.resume=false in a new one)"
        raise CheckpointMismatchError(f"cannot resume {run_dir}: {err}\n{hint} (nothing was changed).") from err


def load_for_new_shape(module: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Strict load that tolerates only fixed sin-cos tables built for another clip shape.

    RoPE models carry no position parameters, so more frames or a larger crop load directly;
    a sin-cos ``pos_embed`` is a deterministic function of the grid, so the new model's own
    table is the right one for its shape and the old one is dropped.
    """
    own = module.state_dict()
    kept = {k: v for k, v in weights.items() if not (k.endswith("pos_embed") and k in own and own[k].shape != v.shape)}
    missing, unexpected = module.load_state_dict(kept, strict=False)
    missing = [k for k in missing if k not in weights or not k.endswith("pos_embed")]
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")


class CheckpointManager:
    """A run directory's checkpoints: restore at start, save on the step cadence, the config.

    It deals in state dicts (gathering them from shards is the parallelism strategy's job), so
    the same saves come from one process, DDP and FSDP, and any of them resumes any other."""

    def __init__(self, run_dir: str | Path, config_yaml: str, keep_last: int = 2, is_main: bool = True) -> None:
        self.run_dir, self.config_yaml, self.keep_last, self.is_main = Path(run_dir), config_yaml, keep_last, is_main

    def latest(self) -> Path | None:
        return find_latest(self.run_dir)

    def restore(self, objective: Any, resume: bool, init_from: str | None) -> dict[str, Any] | None:
        """Load the latest save of this run (returns its train state), or else the weights of
        `init_from` (a run or a save; fresh optimizer, step 0, returns None)."""
        ckpt = self.latest() if resume else None
        if ckpt is not None:
            weights, state, _ = load_for_resume(self.run_dir, ckpt)
            for name, module in objective.checkpoint_modules().items():
                module.load_state_dict(weights[name], strict=True)
            if self.is_main:
                log.info("resumed from %s at step %d", ckpt, int(state["step"]))
            return state
        if init_from:
            source = Path(init_from)
            weights, _, _ = load_checkpoint(find_latest(source) or source)
            fresh = objective.heads_new_to(list(weights))
            for name, module in objective.checkpoint_modules().items():
                if name in fresh:
                    log.info("init_from %s has no %s head: it starts fresh", source, name)
                    continue
                if name not in weights:
                    raise CheckpointMismatchError(
                        f"init_from {source} has no {name!r} weights (it has {sorted(weights)})"
                    )
                load_for_new_shape(module, weights[name])
            if self.is_main:
                log.info("initialised from %s (fresh optimizer, step 0)", source)
        return None

    def write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.run_dir / CONFIG_FILE, self.config_yaml)

    def save(
        self, step: int, states: Mapping[str, Mapping[str, torch.Tensor]], train_state: Mapping[str, Any], meta: dict
    ) -> Path:
        return save_checkpoint(self.run_dir, step, states, train_state, self.config_yaml, meta, self.keep_last)

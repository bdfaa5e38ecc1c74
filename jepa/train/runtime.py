"""Process set-up for training: threads, oneDNN's cache, the SLURM environment, accelerate's
state, and the one line that says what a run computes with.

Everything here acts on the process, not on the model, and must happen before the first
tensor op that depends on it (oneDNN reads its cache size at its first primitive; SLURM's
variables must be exported before torch.distributed starts).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs

from jepa.data.video import resolve_backend
from jepa.models.cpu_attention import use_cpu_attention
from jepa.train import onednn
from jepa.train.distributed import apply_slurm_env


def setup_process(cfg: Any) -> Accelerator:
    """Bound oneDNN's cache, set torch's threads, export SLURM's ranks, start accelerate."""
    onednn.bound_primitive_cache()
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    apply_slurm_env()
    return make_accelerator(cfg)


def make_accelerator(cfg: Any) -> Accelerator:
    t = cfg.trainer
    use_cpu = t.cpu or not torch.cuda.is_available()
    log_with = "tensorboard" if t.tensorboard else None
    # The released predictor uses mask token 0 only, so the other mask tokens never get a
    # gradient and plain DDP stops at the second step. `static_graph=True` (the released
    # choice) fails inside DDP when the first step runs under `no_sync` (grad_accum > 1), so
    # unused parameters are searched for instead: one graph walk per step.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # accelerate keeps one AcceleratorState per process and refuses a second Accelerator with
    # another mixed precision. `train` may run again in one process (a notebook, a sweep) with
    # another trainer.mixed_precision, so a state that disagrees is dropped; the process group
    # (PartialState) stays, and a state that agrees is left alone.
    if AcceleratorState._shared_state.get("_mixed_precision", t.mixed_precision) != t.mixed_precision:
        AcceleratorState._reset_state()
    return Accelerator(
        cpu=use_cpu,
        mixed_precision=t.mixed_precision,
        log_with=log_with,
        project_dir=str(cfg.run_dir),
        kwargs_handlers=[ddp],
    )


def describe_setup(cfg: Any, device: torch.device, world: int, optimizer: Any, loader: Any) -> str:
    """One line of what the run computes with, the first thing to check when a run is slow."""
    t, d = cfg.trainer, cfg.data
    compute = torch.bfloat16 if t.mixed_precision == "bf16" else torch.float32  # fp16 never picks the CPU kernel
    parts = [
        f"{world} process{'es' * (world > 1)} on {device}, torch threads {torch.get_num_threads()}",
        f"precision {t.mixed_precision}",
        f"attention {'jepa cpu_attention' if use_cpu_attention(device, compute) else 'SDPA'}",
        f"AdamW {'fused' if all(g.get('fused') for g in optimizer.param_groups) else 'unfused'}",
        f"loader workers {loader.num_workers}{' (auto)' if d.num_workers is None else ''}"
        + (f", prefetch {loader.prefetch_factor}" if loader.num_workers else "")
        + f", pin_memory {loader.pin_memory}"
        + f", decode threads {getattr(loader.dataset, 'decode_threads', 1)}{' (auto)' if d.decode_threads is None else ''}",
        f"decoder {resolve_backend(d.backend)}",
    ]
    if device.type == "cpu":
        parts.append(f"oneDNN primitive cache {os.environ.get(onednn.ENV, 'default')}")
    return "setup: " + "; ".join(parts)

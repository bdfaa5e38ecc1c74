"""The pretraining loop: accelerate for devices/DDP/precision, exact resume, logging.

Everything that varies with the step (lr, weight decay, EMA momentum, the data position, the
masks) is a function of the step and the seed, so a run restarted from a checkpoint replays
exactly the steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from jepa.data.transforms import normalize_clip
from jepa.data.video import resolve_backend
from jepa.masks.collate import batch_seed
from jepa.masks.multiblock import MaskSampler
from jepa.models.cpu_attention import use_cpu_attention
from jepa.models.layers import compile_blocks
from jepa.train import build, fsdp, onednn
from jepa.train.checkpoint import (
    find_latest,
    load_checkpoint,
    load_for_resume,
    rng_state,
    save_checkpoint,
    set_rng_state,
    split_prefixed,
)
from jepa.train.config import validate_config
from jepa.train.distributed import apply_slurm_env
from jepa.train.logging import JsonlMetrics
from jepa.train.schedules import Cosine, Linear, WarmupDecay
from jepa.train.step import CollapseMonitor

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive non-finite losses; no checkpoint is written for them."""


def _schedules(cfg: Any) -> tuple[WarmupDecay, Cosine, Linear, WarmupDecay]:
    o, total = cfg.optim, cfg.trainer.max_steps
    lr = WarmupDecay(start=o.start_lr, peak=o.lr, final=o.final_lr, warmup=o.warmup_steps, total=total, shape=o.decay)
    wd = Cosine(start=o.weight_decay, final=o.final_weight_decay, total=total)
    ema = Linear(start=o.ema[0], final=o.ema[1], total=total)
    if o.context_warmup_steps < 0:
        raise ValueError(f"optim.context_warmup_steps must be >= 0, got {o.context_warmup_steps}")
    if o.context_warmup_steps and not o.context_weight:
        raise ValueError(
            f"optim.context_warmup_steps={o.context_warmup_steps} warms up the context term, "
            "but optim.context_weight is 0 (the term is off): set the weight or drop the warm-up"
        )
    # The context weight's warm-up, lambda (step + 1) / n up to lambda: it starts at lambda / n,
    # never 0, because a weight of 0 switches the term off and its statistic would log only sometimes.
    n = max(1, o.context_warmup_steps)
    ctx = WarmupDecay(
        start=o.context_weight / n, peak=o.context_weight, final=o.context_weight, warmup=n - 1, total=total
    )
    return lr, wd, ema, ctx


def load_for_new_shape(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
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


class StepMasks:
    """Masks drawn for the whole global batch of a step, then split by rank and micro-batch.

    Seeding by (seed, step) and slicing the rows that belong to this rank's samples makes
    N processes x batch b, one process x batch N*b, and gradient accumulation draw identical
    masks (block sizes are per batch and lengths are truncated per batch, so masks drawn per
    local batch would differ), which is what lets their losses and weights agree.
    """

    def __init__(self, sampler: MaskSampler, seed: int, rank: int, world: int) -> None:
        self.sampler, self.seed, self.rank, self.world = sampler, seed, rank, world

    def __call__(
        self, step: int, micro: int, batch: int, accum: int, device: torch.device
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        generator = torch.Generator().manual_seed(batch_seed(self.seed, [step]))
        ctx, tgt = self.sampler(batch * self.world * accum, generator)
        # The data stream gives global position start + i*world + rank to this rank's i-th sample.
        rows = (torch.arange(batch) + micro * batch) * self.world + self.rank
        return [c[rows].to(device) for c in ctx], [t[rows].to(device) for t in tgt]


def _infinite(loader: torch.utils.data.DataLoader) -> Iterator[dict]:
    while True:
        yield from loader


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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) pretraining as configured; returns a summary of the run."""
    cfg = validate_config(cfg)
    lr_s, wd_s, ema_s, ctx_s = _schedules(cfg)  # first: they refuse bad values before any work
    t = cfg.trainer
    onednn.bound_primitive_cache()
    if t.threads:
        torch.set_num_threads(t.threads)
    run_dir = Path(cfg.run_dir)
    apply_slurm_env()
    accelerator = make_accelerator(cfg)
    rank, world = accelerator.process_index, accelerator.num_processes
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)

    torch.manual_seed(cfg.seed)
    model = build.build_model(cfg)
    if t.fsdp and cfg.objective != "jepa":
        raise ValueError(f"trainer.fsdp supports objective=jepa only, got {cfg.objective!r}")

    start_step, state = 0, None
    ckpt = find_latest(run_dir) if t.resume else None
    if ckpt is not None:
        weights, state, _ = load_for_resume(run_dir, ckpt)
        for name, module in model.checkpoint_modules().items():
            module.load_state_dict(weights[name], strict=True)
        start_step = int(state["step"])
        if accelerator.is_main_process:
            log.info("resumed from %s at step %d", ckpt, start_step)
    elif t.init_from:
        source = Path(t.init_from)
        weights, _, _ = load_checkpoint(find_latest(source) or source)
        for name, module in model.checkpoint_modules().items():
            load_for_new_shape(module, weights[name])
        if accelerator.is_main_process:
            log.info("initialised from %s (fresh optimizer, step 0)", source)

    if t.compile:
        n_compiled = compile_blocks(model)
        if accelerator.is_main_process:
            log.info("compiling %d transformer blocks (torch.compile)", n_compiled)
    if t.fsdp:
        # Shard before the optimizer is built: FSDP replaces the parameters with sharded ones.
        model = fsdp.shard_jepa(model, accelerator.device, t.mixed_precision)
    optimizer = build.adamw(
        build.param_groups(model, cfg.optim.predictor_lr_scale),
        sharded=t.fsdp,
        lr=cfg.optim.start_lr,
        betas=tuple(cfg.optim.betas),
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )
    if state is not None:
        fsdp.load_optimizer_state(model, optimizer, state["optimizer"])
    # Written once the checkpoint (if any) has been found to fit, so a refused resume leaves the
    # run's config as it was.
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_yaml)
    if t.fsdp:
        core = model
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
        core = accelerator.unwrap_model(model)
    if state is not None and state.get("scaler") is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["scaler"])

    masks = StepMasks(MaskSampler(build.mask_specs(cfg), build.token_grid(cfg)), cfg.seed, rank, world)
    # Not under FSDP: running the target encoder before the root module's first forward breaks
    # FSDP2's lazy initialisation (activation checkpointing is the memory lever there).
    per_mask = t.backward_per_mask and len(cfg.mask.configs) > 1 and not t.fsdp

    def grad_sync(sync: bool) -> Any:
        """Gradients are reduced across ranks only in the last backward of a step."""
        if t.fsdp:
            return fsdp.gradient_sync(model, sync)
        return contextlib.nullcontext() if sync else accelerator.no_sync(model)

    dataset = build.build_dataset(cfg)
    per_step = cfg.data.batch_size * world * t.grad_accum
    loader = build.build_loader(cfg, dataset, rank, world, start_sample=start_step * per_step)
    batches = _infinite(loader)
    if accelerator.is_main_process:
        log.info(describe_setup(cfg, accelerator.device, world, optimizer, loader))
    if state is not None:
        set_rng_state(state["rng"])
    else:
        torch.manual_seed(cfg.seed + rank)

    # Only an objective with an EMA teacher logs its momentum (the pixel baseline has none).
    has_teacher = hasattr(core, "target_encoder")
    collapse = CollapseMonitor(t.collapse_threshold)
    metrics = JsonlMetrics(run_dir, resume_step=start_step) if accelerator.is_main_process else None
    if t.tensorboard:
        accelerator.init_trackers("tb")
    bar = tqdm(
        total=t.max_steps,
        initial=start_step,
        disable=not (accelerator.is_main_process and t.progress),
        dynamic_ncols=True,
    )
    nonfinite = int(state.get("nonfinite", 0)) if state is not None else 0
    skipped = int(state.get("skipped", 0)) if state is not None else 0
    device = accelerator.device
    first_loss = last_loss = float("nan")
    model.train()

    def save(step: int) -> None:
        if t.fsdp:
            bad = fsdp.nonfinite_parameters(core)
        else:
            bad = [n for n, p in core.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(f"refusing to checkpoint non-finite weights at step {step}: {bad[:5]}")
        if t.fsdp:
            # Collective gathers: every rank takes part, rank 0 receives the full tensors.
            full = split_prefixed(fsdp.full_state_dict(core))
            parts = {name: fsdp.StateDictView(full.get(name, {})) for name in core.checkpoint_modules()}
            optimizer_state = fsdp.full_optimizer_state(core, optimizer)
        else:
            parts = core.checkpoint_modules()
            optimizer_state = optimizer.state_dict()
        if accelerator.is_main_process:
            save_checkpoint(
                run_dir,
                step,
                parts,
                {
                    "optimizer": optimizer_state,
                    "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                    "step": step,
                    "samples_seen": step * per_step,
                    "rng": rng_state(),
                    "nonfinite": nonfinite,
                    "skipped": skipped,
                },
                config_yaml,
                meta={"world_size": world, "samples_seen": step * per_step, "fsdp": bool(t.fsdp)},
                keep_last=t.keep_last,
            )
        accelerator.wait_for_everyone()

    step = start_step
    try:
        for step in range(start_step, t.max_steps):
            t0 = time.perf_counter()
            lr, wd, momentum = lr_s(step), wd_s(step), ema_s(step)
            if cfg.optim.context_warmup_steps:
                core.context_weight = ctx_s(step)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
                if group.get("apply_wd", False):
                    group["weight_decay"] = wd
            data_wait = 0.0
            total_loss = torch.zeros((), device=device)
            # The objective's statistics (feat_std; var_loss / cov_loss when those terms are on).
            stat_sums: dict[str, torch.Tensor] = {}
            for micro in range(t.grad_accum):
                td = time.perf_counter()
                batch = next(batches)
                data_wait += time.perf_counter() - td
                clips = normalize_clip(batch["video"][:, 0].to(device, non_blocking=True))
                masks_ctx, masks_tgt = masks(step, micro, cfg.data.batch_size, t.grad_accum, device)
                last_micro = micro == t.grad_accum - 1
                if per_mask:
                    # One forward + backward per mask config: the same gradients as one
                    # backward of their mean (each config's loss is seeded with 1/n, the mean's
                    # backward does the same), with one config's activations alive at a time.
                    n = len(masks_ctx)
                    with accelerator.autocast():
                        targets = core.targets(clips)
                    config_losses, config_stats = [], []
                    for i in range(n):
                        with grad_sync(last_micro and i == n - 1), accelerator.autocast():
                            loss_i, stats_i = model(clips, masks_ctx[i : i + 1], masks_tgt[i : i + 1], targets, i, n)
                            accelerator.backward(loss_i / n / t.grad_accum)
                        config_losses.append(loss_i.detach())
                        config_stats.append(stats_i)
                    loss = torch.stack(config_losses).mean()
                    # As one call reports them: per-config statistics (ctx_loss) averaged over the
                    # configs; those of config 0's call only (var_loss, cov_loss) and those of
                    # the whole clip (feat_std) as they are.
                    stats = {
                        key: torch.stack([s[key] for s in config_stats if key in s]).mean() for key in config_stats[0]
                    }
                else:
                    with grad_sync(last_micro), accelerator.autocast():
                        loss, stats = model(clips, masks_ctx, masks_tgt)
                        accelerator.backward(loss / t.grad_accum)
                total_loss += loss.detach() / t.grad_accum
                for key, value in stats.items():
                    stat_sums[key] = stat_sums.get(key, 0.0) + value / t.grad_accum
            mean_loss = accelerator.reduce(total_loss, reduction="mean")
            grad_norm = None
            if cfg.optim.clip_grad:
                if t.fsdp:
                    grad_norm = fsdp.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
                else:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
            finite = math.isfinite(mean_loss.item()) and (grad_norm is None or math.isfinite(float(grad_norm)))
            if finite:
                optimizer.step()
                if t.fsdp:
                    fsdp.ema_update_local(core.target_encoder, core.encoder, momentum)
                else:
                    core.update_target(momentum)
                nonfinite = 0
            else:
                skipped += 1
                nonfinite += 1
                if accelerator.is_main_process:
                    log.warning("non-finite loss at step %d (%d in a row): step skipped", step, nonfinite)
            optimizer.zero_grad(set_to_none=True)
            loss_value = mean_loss.item()
            if math.isnan(first_loss) and finite:
                first_loss = loss_value
            if finite:
                last_loss = loss_value
            dt = time.perf_counter() - t0
            record = {
                "step": step,
                "loss": loss_value,
                "lr": lr,
                "wd": wd,
                "clips_per_s": per_step / dt,
                "data_wait": data_wait / dt,
                "skipped": skipped,
                **{key: accelerator.reduce(value, reduction="mean").item() for key, value in sorted(stat_sums.items())},
            }
            if has_teacher:
                record["ema"] = momentum
            if cfg.optim.context_warmup_steps:
                record["ctx_weight"] = core.context_weight
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            if accelerator.is_main_process:
                metrics.log(record)
                warning = collapse.update(step, record["feat_std"])
                if warning:
                    log.warning(warning)
                bar.set_postfix(
                    loss=f"{loss_value:.4f}",
                    lr=f"{lr:.2e}",
                    clips_s=f"{record['clips_per_s']:.1f}",
                    wait=f"{record['data_wait']:.0%}",
                )
                bar.update(1)
            if nonfinite >= t.max_nonfinite:
                raise NonFiniteLossError(
                    f"{nonfinite} consecutive non-finite losses (last at step {step}); stopping without "
                    f"saving. The last good checkpoint is {find_latest(run_dir)}. Lower optim.lr, enable "
                    "optim.clip_grad, or check the data."
                )
            if t.tensorboard and (step % t.log_every == 0 or step == t.max_steps - 1):
                accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
            if t.ckpt_every and (step + 1) % t.ckpt_every == 0 and step + 1 < t.max_steps and nonfinite == 0:
                save(step + 1)
        if t.max_steps > start_step or find_latest(run_dir) is None:
            save(t.max_steps)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
        if t.tensorboard:
            accelerator.end_training()
    return {
        "run_dir": str(run_dir),
        "start_step": start_step,
        "end_step": t.max_steps,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "skipped": skipped,
        "world_size": world,
    }

"""The pretraining Trainer: build once, then `train_step(step)` until `max_steps`.

Everything that varies with the step (lr, weight decay, EMA momentum, the data position, the
masks, the objective's own weights) is a function of the step and the seed, so a run restarted
from a checkpoint replays exactly the steps an uninterrupted run would have taken.

Where the parts live: the objective (what is learnt, jepa.train.objective), the parallelism
strategy (DDP or FSDP, jepa.train.parallel), checkpoints (jepa.train.checkpoint), process
set-up (jepa.train.runtime), data and models (jepa.train.build).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from jepa.data.transforms import normalize_clip
from jepa.masks.collate import batch_seed
from jepa.masks.multiblock import MaskSampler
from jepa.models.layers import compile_blocks
from jepa.train import build
from jepa.train.checkpoint import CheckpointManager, rng_state, set_rng_state
from jepa.train.config import validate_config
from jepa.train.health import HealthMonitor
from jepa.train.logging import JsonlMetrics
from jepa.train.online_probe import OnlineProbe
from jepa.train.parallel import parallelize
from jepa.train.runtime import describe_setup, setup_process
from jepa.train.schedules import Cosine, Linear, WarmupDecay

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive non-finite losses; no checkpoint is written for them."""


def lr_batch_scale(cfg: Any, world: int) -> float:
    """(global batch / optim.lr_reference_batch) ** optim.lr_batch_power; 1 without a reference batch."""
    o = cfg.optim
    if o.lr_reference_batch is None:
        return 1.0
    if o.lr_reference_batch < 1:
        raise ValueError(f"optim.lr_reference_batch must be >= 1 or null, got {o.lr_reference_batch}")
    global_batch = cfg.data.batch_size * world * cfg.trainer.grad_accum
    return float((global_batch / o.lr_reference_batch) ** o.lr_batch_power)


def optimizer_schedules(cfg: Any, world: int = 1) -> tuple[WarmupDecay, Cosine, Linear]:
    """lr (scaled to the global batch, `lr_batch_scale`), weight decay and EMA momentum by step."""
    o, total, k = cfg.optim, cfg.trainer.max_steps, lr_batch_scale(cfg, world)
    lr = WarmupDecay(
        start=k * o.start_lr, peak=k * o.lr, final=k * o.final_lr, warmup=o.warmup_steps, total=total, shape=o.decay
    )
    return lr, Cosine(start=o.weight_decay, final=o.final_weight_decay, total=total), Linear(*o.ema, total=total)


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


class Trainer:
    """Pretraining of one objective as configured (the Hydra schema in jepa.train.config)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg = validate_config(cfg)
        self.t = t = cfg.trainer
        self.accelerator = setup_process(cfg)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.lr_s, self.wd_s, self.ema_s = optimizer_schedules(cfg, self.world)
        main = self.accelerator.is_main_process
        if main and lr_batch_scale(cfg, self.world) != 1.0:
            log.info("lr x %.3g: global batch %d, lr chosen for %d (optim.lr_reference_batch)",
                     lr_batch_scale(cfg, self.world), cfg.data.batch_size * self.world * t.grad_accum,
                     cfg.optim.lr_reference_batch)  # fmt: skip
        self.checkpoints = CheckpointManager(cfg.run_dir, OmegaConf.to_yaml(cfg, resolve=True), t.keep_last, main)
        torch.manual_seed(cfg.seed)
        objective = build.build_model(cfg)  # refuses bad objective settings before any work
        if t.fsdp and cfg.objective != "jepa":
            raise ValueError(f"trainer.fsdp supports objective=jepa only, got {cfg.objective!r}")
        state = self.checkpoints.restore(objective, resume=t.resume, init_from=t.init_from)
        if t.compile:
            n_compiled = compile_blocks(objective)
            if main:
                log.info("compiling %d transformer blocks (torch.compile)", n_compiled)
        self.parallel = parallelize(
            objective,
            self.accelerator,
            self._make_optimizer,
            t.fsdp,
            t.mixed_precision,
            state["optimizer"] if state is not None else None,
        )
        self.objective, self.optimizer = self.parallel.objective, self.parallel.optimizer
        # Written once the checkpoint (if any) fits, so a refused resume leaves the run as it was.
        if main:
            self.checkpoints.write_config()
        self._build_data(resume_step=int(state["step"]) if state is not None else 0)
        self.online_probe, self.last_probe = None, None
        if t.online_probe.manifest:
            tubelet = build.encoder_args(cfg.model).tubelet_size
            self.online_probe = OnlineProbe(t.online_probe, cfg.data, tubelet, self.accelerator.device)
        self.start_step, self.nonfinite, self.skipped = 0, 0, 0
        if state is not None:
            self.load_state_dict(state)
        else:
            torch.manual_seed(cfg.seed + self.rank)

    def _make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        o = self.cfg.optim
        groups = build.param_groups(model, o.predictor_lr_scale)
        return build.adamw(
            groups, sharded=self.t.fsdp, lr=o.start_lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
        )

    def _build_data(self, resume_step: int) -> None:
        cfg, t = self.cfg, self.t
        sampler = MaskSampler(build.mask_specs(cfg), build.token_grid(cfg))
        self.masks = StepMasks(sampler, cfg.seed, self.rank, self.world)
        self.per_config = t.backward_per_mask and len(cfg.mask.configs) > 1 and self.parallel.per_config_backward
        self.per_step = cfg.data.batch_size * self.world * t.grad_accum
        dataset = build.build_dataset(cfg)
        loader = build.build_loader(cfg, dataset, self.rank, self.world, start_sample=resume_step * self.per_step)
        self.batches = _infinite(loader)
        if self.accelerator.is_main_process:
            log.info(describe_setup(cfg, self.accelerator.device, self.world, self.optimizer, loader))

    def state_dict(self, step: int) -> dict[str, Any]:
        """What resuming at `step` needs beyond the weights (collective under FSDP)."""
        scaler = self.accelerator.scaler
        return {
            "optimizer": self.parallel.optimizer_state(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "step": step,
            "samples_seen": step * self.per_step,
            "rng": rng_state(),
            "nonfinite": self.nonfinite,
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The counters, grad scaler and RNG of a saved run (its optimizer is loaded when built)."""
        self.start_step = int(state["step"])
        self.nonfinite, self.skipped = int(state.get("nonfinite", 0)), int(state.get("skipped", 0))
        scaler = self.accelerator.scaler
        if state.get("scaler") is not None and scaler is not None:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])

    def _begin_step(self, step: int) -> dict[str, float]:
        """Set this step's lr and weight decay; returns the scheduled values to log."""
        lr, wd = self.lr_s(step), self.wd_s(step)
        extra = self.objective.begin_step(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
            if group.get("apply_wd", False):
                group["weight_decay"] = wd
        return {"lr": lr, "wd": wd, **extra}

    def _micro_step(self, clips: torch.Tensor, masks: tuple, last: bool) -> tuple[torch.Tensor, dict]:
        """Forward and backward of one micro-batch, all mask configs in one call."""
        accelerator = self.accelerator
        with self.parallel.sync_gradients(last), accelerator.autocast():
            loss, stats = self.parallel.model(clips, *masks)
            accelerator.backward(loss / self.t.grad_accum)
        return loss, stats

    def _micro_step_per_config(self, clips: torch.Tensor, masks: tuple, last: bool) -> tuple[torch.Tensor, dict]:
        """One forward + backward per mask config: the same gradients as one backward of their
        mean (each config's loss is seeded with 1/n), with one config's activations alive at a time."""
        accelerator, (ctx, tgt) = self.accelerator, masks
        n = len(ctx)
        with accelerator.autocast():
            targets = self.objective.targets(clips)
        losses, stats = [], []
        for i in range(n):
            with self.parallel.sync_gradients(last and i == n - 1), accelerator.autocast():
                loss_i, stats_i = self.parallel.model(clips, ctx[i : i + 1], tgt[i : i + 1], targets, i, n)
                accelerator.backward(loss_i / n / self.t.grad_accum)
            losses.append(loss_i.detach())
            stats.append(stats_i)
        return torch.stack(losses).mean(), self.objective.merge_config_stats(stats)

    def _forward_backward(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], float]:
        """The step's mean loss and statistics over its micro-batches, and the time spent waiting for data."""
        t, device = self.t, self.accelerator.device
        micro_step = self._micro_step_per_config if self.per_config else self._micro_step
        total = torch.zeros((), device=device)
        stat_sums: dict[str, torch.Tensor] = {}
        data_wait = 0.0
        for micro in range(t.grad_accum):
            td = time.perf_counter()
            batch = next(self.batches)
            data_wait += time.perf_counter() - td
            clips = normalize_clip(batch["video"][:, 0].to(device, non_blocking=True))
            masks = self.masks(step, micro, self.cfg.data.batch_size, t.grad_accum, device)
            loss, stats = micro_step(clips, masks, micro == t.grad_accum - 1)
            total += loss.detach() / t.grad_accum
            for key, value in stats.items():
                stat_sums[key] = stat_sums.get(key, 0.0) + value / t.grad_accum
        return total, stat_sums, data_wait

    def _optimizer_step(self, step: int, mean_loss: torch.Tensor) -> tuple[bool, float | None]:
        """Clip, then step the optimizer and the EMA unless the loss or the gradient is not finite."""
        clip = self.cfg.optim.clip_grad
        grad_norm = float(self.parallel.clip_grad_norm_(clip)) if clip else None
        finite = math.isfinite(mean_loss.item()) and (grad_norm is None or math.isfinite(grad_norm))
        if finite:
            self.optimizer.step()
            self.parallel.ema_update(self.ema_s(step))
            self.nonfinite = 0
        else:
            self.skipped += 1
            self.nonfinite += 1
            if self.accelerator.is_main_process:
                log.warning("non-finite loss at step %d (%d in a row): step skipped", step, self.nonfinite)
        self.optimizer.zero_grad(set_to_none=True)
        return finite, grad_norm

    def train_step(self, step: int) -> dict[str, Any]:
        """One optimizer step; returns its record (the line written to metrics.jsonl)."""
        t0 = time.perf_counter()
        scheduled = self._begin_step(step)
        total, stat_sums, data_wait = self._forward_backward(step)
        reduce = self.accelerator.reduce
        mean_loss = reduce(total, reduction="mean")
        finite, grad_norm = self._optimizer_step(step, mean_loss)
        dt = time.perf_counter() - t0
        record = {
            "step": step,
            "loss": mean_loss.item(),
            **scheduled,
            "clips_per_s": self.per_step / dt,
            "data_wait": data_wait / dt,
            "skipped": self.skipped,
            **{key: reduce(value, reduction="mean").item() for key, value in sorted(stat_sums.items())},
            "finite": finite,
        }
        if self.objective.ema_pairs():
            record["ema"] = self.ema_s(step)
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        return record

    def save(self, step: int) -> None:
        """A checkpoint of every rank's state at `step` (collective: every rank calls it)."""
        bad = self.parallel.nonfinite_parameters()
        if bad:
            raise NonFiniteLossError(f"refusing to checkpoint non-finite weights at step {step}: {bad[:5]}")
        states, train_state = self.parallel.model_states(), self.state_dict(step)
        if self.accelerator.is_main_process:
            meta = {"world_size": self.world, "samples_seen": step * self.per_step, "fsdp": bool(self.t.fsdp)}
            self.checkpoints.save(step, states, train_state, meta)
        self.accelerator.wait_for_everyone()

    def train(self) -> dict[str, Any]:
        """Run from the start (or resumed) step to `max_steps`; returns a summary of the run."""
        t, main = self.t, self.accelerator.is_main_process
        metrics = JsonlMetrics(self.checkpoints.run_dir, resume_step=self.start_step) if main else None
        if t.tensorboard:
            self.accelerator.init_trackers("tb")
        bar = tqdm(total=t.max_steps, initial=self.start_step, disable=not (main and t.progress), dynamic_ncols=True)
        health, losses = HealthMonitor(t.collapse_threshold, t.rank_warn_fraction), []
        self.parallel.model.train()
        try:
            for step in range(self.start_step, t.max_steps):
                record = self.train_step(step)
                record.update(self._probe(step))
                if record.pop("finite"):
                    losses.append(record["loss"])
                if main:
                    self._report(record, metrics, health, bar)
                self._after_step(step, record)
            if t.max_steps > self.start_step or self.checkpoints.latest() is None:
                self.save(t.max_steps)
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
            if t.tensorboard:
                self.accelerator.end_training()
        return {
            "run_dir": str(self.checkpoints.run_dir),
            "start_step": self.start_step,
            "end_step": t.max_steps,
            "first_loss": losses[0] if losses else float("nan"),
            "last_loss": losses[-1] if losses else float("nan"),
            "skipped": self.skipped,
            "world_size": self.world,
        }

    def _probe(self, step: int) -> dict[str, float]:
        """The online probe's scores at its cadence and the last step; {} between."""
        every = self.t.online_probe.every
        if self.online_probe is None or not ((step + 1) % every == 0 or step + 1 == self.t.max_steps):
            return {}
        modules = self.objective.checkpoint_modules()
        scores = self.online_probe(modules.get("target_encoder", modules["encoder"]))
        self.last_probe = scores
        return scores

    def _report(self, record: dict[str, Any], metrics: JsonlMetrics, health: HealthMonitor, bar: tqdm) -> None:
        metrics.log(record)
        warning = health.update(record["step"], record)
        if warning:
            log.warning(warning)
        shown = {"loss": f"{record['loss']:.4f}", "lr": f"{record['lr']:.2e}"}
        if "rank_teacher" in record:
            shown["rank"] = f"{record['rank_teacher']:.0f}"
        if self.last_probe:
            shown["probe"] = f"{self.last_probe['probe_linear']:.0f}%"
        shown.update(clips_s=f"{record['clips_per_s']:.1f}", wait=f"{record['data_wait']:.0%}")
        bar.set_postfix(shown)
        bar.update(1)

    def _after_step(self, step: int, record: dict[str, Any]) -> None:
        """Stop on too many non-finite steps; log to TensorBoard and save on their cadence."""
        t = self.t
        if self.nonfinite >= t.max_nonfinite:
            raise NonFiniteLossError(
                f"{self.nonfinite} consecutive non-finite losses (last at step {step}); stopping without "
                f"saving. The last good checkpoint is {self.checkpoints.latest()}. Lower optim.lr, enable "
                "optim.clip_grad, or check the data."
            )
        if t.tensorboard and (step % t.log_every == 0 or step == t.max_steps - 1 or "probe_linear" in record):
            self.accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
        if t.ckpt_every and (step + 1) % t.ckpt_every == 0 and step + 1 < t.max_steps and self.nonfinite == 0:
            self.save(step + 1)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) pretraining as configured; returns a summary of the run."""
    return Trainer(cfg).train()

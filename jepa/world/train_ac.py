"""Train the action-conditioned predictor on a frozen encoder's latents (V-JEPA 2-AC recipe).

Frames are encoded once (the encoder is frozen, so its latents never change) and windows of
`num_frames` frames are drawn from them. Per window, as released:

- teacher forcing: from the true latents of frames 0..T-2 with their actions and states,
  predict frames 1..T-1 in one block-causal pass; L1 against the true latents;
- rollout: predict frame 1 from frame 0, then feed the prediction back to predict frame 2,
  and so on for `rollout_steps` steps (the true states are fed, as released); L1 over all
  rolled-out frames.

Loss = teacher forcing + rollout. Predictions are layer-normed like the targets.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jepa.world.ac_predictor import ACPredictor
from jepa.world.frame_encoder import FrameEncoder
from jepa.world.trajectories import iter_episodes

log = logging.getLogger(__name__)


@dataclass
class LatentEpisode:
    latents: Tensor  # (T, N, D), layer-normed encoder tokens of each frame
    actions: Tensor  # (T - 1, A)
    states: Tensor  # (T, S)


def encode_dataset(root: str | Path, encoder: FrameEncoder, max_episodes: int | None = None) -> list[LatentEpisode]:
    """Decode every episode of a trajectory dataset and encode its frames once."""
    out = []
    for i, ep in enumerate(iter_episodes(root)):
        if max_episodes is not None and i >= max_episodes:
            break
        latents = encoder(torch.from_numpy(ep.frames)).cpu()
        out.append(LatentEpisode(latents, torch.from_numpy(ep.actions), torch.from_numpy(ep.states)))
    if not out:
        raise ValueError(f"no episodes in {root}")
    return out


class WindowSampler:
    """Uniformly random windows of `num_frames` consecutive frames over all episodes."""

    def __init__(self, episodes: list[LatentEpisode], num_frames: int, seed: int = 0) -> None:
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {num_frames}")
        self.episodes = episodes
        self.num_frames = num_frames
        self.starts = [(e, s) for e, ep in enumerate(episodes) for s in range(len(ep.latents) - num_frames + 1)]
        if not self.starts:
            raise ValueError(f"no episode has {num_frames} frames")
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, batch_size: int, indices: np.ndarray | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, N, D) latents, (B, T-1, A) actions, (B, T, S) states."""
        if indices is None:
            indices = self.rng.integers(len(self.starts), size=batch_size)
        z, a, s = [], [], []
        for i in indices:
            e, t0 = self.starts[int(i)]
            ep, t1 = self.episodes[e], t0 + self.num_frames
            z.append(ep.latents[t0:t1])
            a.append(ep.actions[t0 : t1 - 1])
            s.append(ep.states[t0:t1])
        return torch.stack(z), torch.stack(a), torch.stack(s)


def _predict(predictor: ACPredictor, z: Tensor, actions: Tensor, states: Tensor) -> Tensor:
    out = predictor(z, actions, states)
    return F.layer_norm(out, out.shape[-1:])


def ac_losses(
    predictor: ACPredictor, z: Tensor, actions: Tensor, states: Tensor, rollout_steps: int = 2
) -> tuple[Tensor, Tensor]:
    """Teacher-forcing and rollout L1 losses of a window z (B, T, N, D), actions (B, T-1, A), states (B, T, S)."""
    t = z.shape[1]
    if not 1 <= rollout_steps <= t - 1:
        raise ValueError(f"rollout_steps must be in [1, T-1={t - 1}], got {rollout_steps}")
    tf = _predict(predictor, z[:, :-1], actions, states[:, :-1])
    tf_loss = (tf - z[:, 1:]).abs().mean()
    rolled = torch.cat((z[:, :1], tf[:, :1]), dim=1)  # step 1 of the rollout is the first TF prediction
    for n in range(1, rollout_steps):
        nxt = _predict(predictor, rolled, actions[:, : n + 1], states[:, : n + 1])[:, -1:]
        rolled = torch.cat((rolled, nxt), dim=1)
    rollout_loss = (rolled[:, 1:] - z[:, 1 : rollout_steps + 1]).abs().mean()
    return tf_loss, rollout_loss


@dataclass
class TrainACConfig:
    steps: int = 600
    batch_size: int = 32
    num_frames: int = 4
    rollout_steps: int = 2
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 20
    weight_decay: float = 0.04
    grad_clip: float = 1.0
    log_every: int = 50
    seed: int = 0


def _lr_at(step: int, c: TrainACConfig) -> float:
    """Linear warmup, then cosine decay to min_lr (a short run benefits from ending at a low lr)."""
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def evaluate_losses(
    predictor: ACPredictor, sampler: WindowSampler, rollout_steps: int, max_windows: int = 256
) -> dict[str, float]:
    """Mean losses over a fixed, evenly spread set of windows (same set every call)."""
    was_training = predictor.training
    predictor.eval()
    idx = np.linspace(0, len(sampler) - 1, min(max_windows, len(sampler))).astype(int)
    totals = {"tf": 0.0, "rollout": 0.0}
    for chunk in np.array_split(idx, max(1, len(idx) // 64)):
        tf, ro = ac_losses(predictor, *sampler.batch(len(chunk), chunk), rollout_steps=rollout_steps)
        totals["tf"] += float(tf) * len(chunk)
        totals["rollout"] += float(ro) * len(chunk)
    predictor.train(was_training)
    return {k: v / len(idx) for k, v in totals.items()}


def train_ac_predictor(predictor: ACPredictor, sampler: WindowSampler, config: TrainACConfig) -> list[dict[str, float]]:
    """AdamW on teacher-forcing + rollout L1; returns the logged history."""
    c = config
    torch.manual_seed(c.seed)
    decay = [p for p in predictor.parameters() if p.ndim > 1]
    no_decay = [p for p in predictor.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=c.lr
    )
    predictor.train()
    history = []
    start = time.perf_counter()
    for step in range(c.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, c)
        z, a, s = sampler.batch(c.batch_size)
        tf_loss, rollout_loss = ac_losses(predictor, z, a, s, c.rollout_steps)
        loss = tf_loss + rollout_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(predictor.parameters(), c.grad_clip)
        opt.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {float(loss)} at step {step}")
        if step % c.log_every == 0 or step == c.steps - 1:
            row = {"step": step, "loss": loss.item(), "tf": tf_loss.item(), "rollout": rollout_loss.item(),
                   "lr": _lr_at(step, c), "seconds": time.perf_counter() - start}  # fmt: skip
            history.append(row)
            log.info("step %(step)d loss %(loss).4f tf %(tf).4f rollout %(rollout).4f lr %(lr).2e", row)
    predictor.eval()
    return history

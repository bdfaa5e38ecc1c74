"""The contract between the Trainer and what it trains: an `Objective`.

JEPA (`jepa.train.step.JEPA`) and the pixel baseline (`jepa.train.pixel.PixelMAE`) implement
it; a new objective subclasses `Objective` and the Trainer runs it unchanged, on one process,
under DDP or FSDP, with exact resume.

What the Trainer relies on, per step:
1. `begin_step(step)`: the objective's own schedules (V-JEPA 2.1's context-weight warm-up);
   returns values to log.
2. `forward(clips, masks_ctx, masks_tgt)` -> `(loss, stats)`: the loss over all mask configs
   and detached statistics (`feat_std` is required: the collapse monitor reads it).
   One config at a time (`trainer.backward_per_mask`, to keep one config's activations alive):
   `targets(clips)` once, then `forward(clips, ctx[i:i+1], tgt[i:i+1], targets, i, n)` with a
   backward after each call; the gradients are those of one call, so anything computed once
   per step must ride on the call with `first_config == 0`, weighted by `num_configs`.
   `merge_config_stats` turns the calls' statistics into the one call's.
3. `ema_pairs()`: (target, source) modules the Trainer averages after each optimizer step
   (none for objectives without a teacher; the momentum is logged only when there are some).
4. `checkpoint_modules()`: the modules saved and restored, by prefix; `heads_new_to(names)`: those
   an `init_from` source lacking them leaves at their init (training-only heads).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Objective(nn.Module):
    """Base class of training objectives (see the module docstring for the contract)."""

    def targets(self, clips: Tensor) -> Tensor:
        """What the predictions are compared with, for the whole clip (no gradient)."""
        raise NotImplementedError

    def forward(
        self,
        clips: Tensor,
        masks_ctx: Sequence[Tensor],
        masks_tgt: Sequence[Tensor],
        targets: Tensor | None = None,
        first_config: int = 0,
        num_configs: int = 0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def begin_step(self, step: int) -> dict[str, float]:
        """Set step-dependent weights before the step's forward; returns what to log."""
        return {}

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(target, source) pairs averaged with the EMA momentum after every optimizer step."""
        return []

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def heads_new_to(self, source_modules: Sequence[str]) -> list[str]:
        """The checkpoint modules an `init_from` source without them may leave at their init
        (training-only heads); any other module it lacks is an error."""
        return []

    @staticmethod
    def merge_config_stats(per_config: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The statistics of one call over all configs, from one call per config: each key is
        averaged over the calls that report it (per-config terms such as `ctx_loss` over all of
        them; those of config 0's call, such as `var_loss`, `feat_std` or the ranks, as they are)."""
        keys = dict.fromkeys(k for stats in per_config for k in stats)
        return {k: torch.stack([s[k] for s in per_config if k in s]).mean() for k in keys}

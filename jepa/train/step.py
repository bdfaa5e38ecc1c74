"""The JEPA objective: predict the EMA target encoder's features of masked tokens.

One module holds context encoder, predictor and target encoder so that a single
``accelerator.prepare`` wraps them (DDP reduces only the parameters that need gradients; the
target encoder has none) and so that the student/teacher logic lives in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa.masks.ops import check_indices, gather_tokens
from jepa.models.rope import index_to_position
from jepa.train.forecast import FORECAST_PREFIX, SliceForecast
from jepa.train.gather import gather_ranks
from jepa.train.health import effective_rank, feature_std
from jepa.train.objective import Objective
from jepa.train.schedules import context_ramp
from jepa.train.sigreg import random_directions, sigreg


def distance_to_targets(ctx_idx: Tensor, tgt_idx: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """(B, Kc) Euclidean distance, in tokens of the (T', H', W') grid, from each context token to
    the nearest target token of its sample.

    V-JEPA 2.1 weighs its loss on context tokens by 1 / sqrt of this distance: tokens beside a
    hole must carry the local detail a prediction needs, far ones may stay coarse.
    """
    n = grid[0] * grid[1] * grid[2]
    check_indices(ctx_idx, n)
    check_indices(tgt_idx, n)
    if ctx_idx.shape[0] != tgt_idx.shape[0] or tgt_idx.shape[1] == 0:
        raise ValueError(
            f"need targets in every sample: context {tuple(ctx_idx.shape)}, targets {tuple(tgt_idx.shape)}"
        )
    ctx_pos = index_to_position(ctx_idx, grid)
    return torch.cdist(ctx_pos, index_to_position(tgt_idx.to(ctx_pos.device), grid)).amin(dim=-1)


def masked_prediction_loss(
    encoder: nn.Module,
    predictor: nn.Module,
    clips: Tensor,
    masks_ctx: Sequence[Tensor],
    masks_tgt: Sequence[Tensor],
    targets: Tensor,
    loss_exp: float,
    per_config_mask_tokens: bool,
    first_config: int = 0,
    context_weight: float = 0.0,
    out_layers: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Mean over mask configs of ``mean |predictor(encoder(context)) - targets[target idx]|^e / e``.

    The one masked-prediction loop shared by the latent (JEPA) and pixel objectives, so the two
    differ only in their targets. Returns the loss, the first config's context tokens and the
    context term (None when `context_weight` is 0). `first_config` is the index of
    `masks_ctx[0]` among all configs (for per-config mask tokens when the configs are run one
    call at a time).

    `context_weight` = lambda > 0 adds V-JEPA 2.1's dense term: the predictor's outputs at the
    context positions regress the targets there too, each token weighted by
    lambda / sqrt(distance to the nearest target token), so the encoder's context tokens must
    keep their local content instead of becoming aggregates that serve only the prediction.
    `out_layers` are the encoder blocks whose outputs (concatenated) the predictor takes.
    """
    if len(masks_ctx) != len(masks_tgt) or not masks_ctx:
        raise ValueError(f"need one (context, target) pair per mask config, got {len(masks_ctx)} and {len(masks_tgt)}")

    def powered_error(pred: Tensor, idx: Tensor) -> Tensor:
        error = torch.abs(pred.to(targets.dtype) - gather_tokens(targets, idx))
        # x ** 1 is x: skipping the pow for L1 saves a pass and a saved tensor, same values.
        return error if loss_exp == 1 else error**loss_exp

    grid = encoder.grid_size(*clips.shape[-3:]) if context_weight else None
    losses, context_losses, first = [], [], None
    for i, (ctx_idx, tgt_idx) in enumerate(zip(masks_ctx, masks_tgt)):
        z = encoder(clips, masks=ctx_idx, out_layers=out_layers)
        first = z if first is None else first
        mask_index = first_config + i if per_config_mask_tokens else 0
        if grid is not None:
            pred, pred_ctx = predictor(z, ctx_idx, tgt_idx, mask_index=mask_index, return_context=True)
            err = powered_error(pred_ctx, ctx_idx).mean(dim=-1) / loss_exp
            weight = context_weight / distance_to_targets(ctx_idx, tgt_idx, grid).sqrt().to(err.device)
            context_losses.append((weight * err).mean())
        else:
            pred = predictor(z, ctx_idx, tgt_idx, mask_index=mask_index)
        losses.append(torch.mean(powered_error(pred, tgt_idx)) / loss_exp)
    loss = torch.stack(losses).mean()
    if not context_losses:
        return loss, first, None
    context = torch.stack(context_losses).mean()
    return loss + context, first, context


def variance_covariance(tokens: Tensor, gamma: float = 1.0) -> tuple[Tensor, Tensor]:
    """VICReg's variance hinge and covariance penalty over every token of a batch.

    Channels are layer-normed first (no affine), so the terms cannot be met by scaling, and the
    variance is across tokens of all clips and positions: it is low when tokens are alike, the
    spatially uniform partial collapse a short JEPA run drifts into (VJ-VCR, Drozdov et al. 2024,
    regularise V-JEPA this way).
    """
    x = F.layer_norm(tokens.float(), tokens.shape[-1:]).flatten(0, -2)
    if x.shape[0] < 2:
        raise ValueError("the variance / covariance terms need at least two tokens")
    x = x - x.mean(dim=0)
    var = F.relu(gamma - torch.sqrt(x.var(dim=0) + 1e-4)).mean()
    cov = x.T @ x / (x.shape[0] - 1)
    off_diagonal = cov - torch.diag_embed(torch.diagonal(cov))
    return var, off_diagonal.pow(2).sum() / x.shape[1]


class JEPA(Objective):
    """Context encoder + predictor trained against a frozen EMA copy of the encoder.

    `var_weight` / `cov_weight` > 0 add the `variance_covariance` terms of the context tokens
    (off in the released recipe) and `sigreg_weight` > 0 LeJEPA's SIGReg on them
    (`jepa.train.sigreg`, `sigreg_slices` random directions drawn from the step), gathered over ranks so a DDP run is the one-process run at its
    global batch (under gradient accumulation they stay statistics of each micro-batch).
    `target_layers` = k > 1 regresses the mean of the last k target blocks (each layer-normed)
    instead of the final output, as data2vec does. `context_weight` > 0 adds V-JEPA 2.1's loss
    on the context tokens (`masked_prediction_loss`), ramped up over `context_warmup_steps` of
    `total_steps` (`jepa.train.schedules.context_ramp`). `levels` (block numbers ending at the
    encoder's depth) is V-JEPA 2.1's deep self-supervision: the predictor takes the student's
    outputs of those blocks, concatenated, and predicts the teacher's (each layer-normed), so
    intermediate blocks are trained toward targets too; the predictor's `embed_dim` must be
    the encoder's times the number of levels. Collapse statistics and the variance/covariance
    terms stay on the last level, the encoder's output. `forecast_weight` > 0 adds the slice
    forecast (`jepa.train.forecast`): the mean of each time slice of config 0's context tokens
    predicts, through one linear map, the next slice's targets, so pooled features carry motion.
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: nn.Module,
        target_encoder: nn.Module,
        loss_exp: float = 1.0,
        per_config_mask_tokens: bool = False,
        var_weight: float = 0.0,
        cov_weight: float = 0.0,
        target_layers: int = 1,
        context_weight: float = 0.0,
        levels: Sequence[int] = (),
        context_warmup_steps: int = 0,
        total_steps: int = 1,
        sigreg_weight: float = 0.0,
        sigreg_slices: int = 256,
        forecast_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if var_weight < 0 or cov_weight < 0 or sigreg_weight < 0 or sigreg_slices < 1:
            raise ValueError(
                f"var_weight, cov_weight, sigreg_weight must be >= 0 and sigreg_slices >= 1, got "
                f"{var_weight}, {cov_weight}, {sigreg_weight}, {sigreg_slices}"
            )
        self.sigreg_weight, self.sigreg_slices, self._step = sigreg_weight, sigreg_slices, 0
        if not context_weight >= 0:
            raise ValueError(f"context_weight must be >= 0, got {context_weight}")
        self.context_weight = context_weight
        self.context_warmup_steps = context_warmup_steps
        self._context_ramp = context_ramp(context_weight, context_warmup_steps, total_steps)
        if not 1 <= target_layers <= len(target_encoder.blocks):
            raise ValueError(
                f"target_layers must be in [1, {len(target_encoder.blocks)}] (the encoder's blocks), got {target_layers}"
            )
        self.target_layers = target_layers
        self.levels = tuple(int(k) for k in levels)
        if self.levels:
            depth = len(target_encoder.blocks)
            if list(self.levels) != sorted(set(self.levels)) or self.levels[-1] != depth or self.levels[0] < 1:
                raise ValueError(
                    f"levels must be increasing block numbers in 1..{depth} ending at {depth}, got {list(levels)}"
                )
            if target_layers != 1:
                raise ValueError(
                    f"levels and target_layers > 1 are two kinds of multi-layer target: pick one, got {target_layers}"
                )
            width = encoder.embed_dim * len(self.levels)
            if predictor.embed_dim != width:
                raise ValueError(
                    f"{len(self.levels)} levels of {encoder.embed_dim} channels need a predictor embed_dim of {width}, "
                    f"got {predictor.embed_dim}"
                )
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = target_encoder
        self.var_weight = var_weight
        self.cov_weight = cov_weight
        self.target_encoder.requires_grad_(False)
        self.loss_exp = loss_exp
        self.per_config_mask_tokens = per_config_mask_tokens
        if not forecast_weight >= 0:
            raise ValueError(f"forecast_weight must be >= 0, got {forecast_weight}")
        self.forecast_weight = forecast_weight
        self.forecast: SliceForecast | None = None
        if forecast_weight:
            _, h, w = encoder.grid_size(encoder.args.num_frames, *encoder.args.img_size)
            self.forecast = SliceForecast(encoder.embed_dim, h * w)

    @torch.no_grad()
    def targets(self, clips: Tensor) -> Tensor:
        """Layer-normed target-encoder features of the whole clip (no affine, as released)."""
        if self.levels:
            h = self.target_encoder(clips, out_layers=self.levels)
            return torch.cat([F.layer_norm(c, c.shape[-1:]) for c in h.chunk(len(self.levels), dim=-1)], dim=-1)
        if self.target_layers == 1:
            h = self.target_encoder(clips)
            return F.layer_norm(h, h.shape[-1:])
        outputs: list[Tensor] = []
        hooks = [
            block.register_forward_hook(lambda _m, _i, out: outputs.append(F.layer_norm(out, out.shape[-1:])))
            for block in self.target_encoder.blocks[-self.target_layers :]
        ]
        try:
            self.target_encoder(clips)
        finally:
            for hook in hooks:
                hook.remove()
        h = torch.stack(outputs).mean(0)
        return F.layer_norm(h, h.shape[-1:])

    def forward(
        self,
        clips: Tensor,
        masks_ctx: Sequence[Tensor],
        masks_tgt: Sequence[Tensor],
        targets: Tensor | None = None,
        first_config: int = 0,
        num_configs: int = 0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss averaged over mask configs, plus detached statistics for logging.

        `targets` (from `self.targets(clips)`), `first_config` and `num_configs` (the step's
        configs, 0 = those given) let the Trainer run the configs one call at a time, each followed
        by its backward (jepa.train.objective): the variance/covariance terms then ride on the call
        holding config 0, weighted so the step's gradient is the one of a single call.
        """
        h = self.targets(clips) if targets is None else targets
        loss, first, context = masked_prediction_loss(
            self.encoder,
            self.predictor,
            clips,
            masks_ctx,
            masks_tgt,
            h,
            self.loss_exp,
            self.per_config_mask_tokens,
            first_config,
            self.context_weight,
            self.levels or None,
        )
        if self.levels:
            h, first = h[..., -self.encoder.embed_dim :], first[..., -self.encoder.embed_dim :]
        stats = {} if context is None else {"ctx_loss": context.detach()}
        if first_config == 0:
            # The teacher's statistics are the same for every config: once per step, on config 0's call.
            stats.update(
                feat_std=feature_std(h.detach()), rank_teacher=effective_rank(h), rank_student=effective_rank(first)
            )
            share = (num_configs or len(masks_ctx)) / len(masks_ctx)
            loss = loss + self._regularizers(first, stats, share)
            if self.forecast is not None:
                grid = self.encoder.grid_size(*clips.shape[-3:])
                forecast = self.forecast.loss(first, masks_ctx[0], h, grid, self.loss_exp)
                stats["forecast_loss"] = forecast.detach()
                loss = loss + share * self.forecast_weight * forecast
        return loss, stats

    def _regularizers(self, first: Tensor, stats: dict[str, Tensor], share: float) -> Tensor:
        """The anti-collapse terms on config 0's context tokens, gathered over ranks, weighted by `share`."""
        total = first.new_zeros(())
        if not (self.var_weight or self.cov_weight or self.sigreg_weight):
            return total
        tokens = gather_ranks(first)
        if self.var_weight or self.cov_weight:
            var, cov = variance_covariance(tokens)
            total = total + self.var_weight * var + self.cov_weight * cov
            stats.update(var_loss=var.detach(), cov_loss=cov.detach())
        if self.sigreg_weight:
            directions = random_directions(tokens.shape[-1], self.sigreg_slices, self._step, tokens.device)
            reg = sigreg(tokens, directions)
            total = total + self.sigreg_weight * reg
            stats["sigreg_loss"] = reg.detach()
        return share * total

    def begin_step(self, step: int) -> dict[str, float]:
        """The context weight of this step, logged while it is warming up; SIGReg's directions follow the step."""
        self._step = step
        if not self.context_warmup_steps:
            return {}
        self.context_weight = self._context_ramp(step)
        return {"ctx_weight": self.context_weight}

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.target_encoder, self.encoder)]

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """Modules saved in checkpoints, by prefix (the Trainer saves and restores exactly these)."""
        modules = {"encoder": self.encoder, "predictor": self.predictor, "target_encoder": self.target_encoder}
        return modules if self.forecast is None else {**modules, FORECAST_PREFIX: self.forecast}

    def heads_new_to(self, source_modules: Sequence[str]) -> list[str]:
        """The slice-forecast head starts fresh when the source run trained without it."""
        return [FORECAST_PREFIX] if self.forecast is not None and FORECAST_PREFIX not in source_modules else []

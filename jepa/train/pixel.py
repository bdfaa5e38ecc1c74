"""Pixel-target baseline (VideoMAE-style): predict normalised pixels of the masked tubelets.

Everything but the target is the JEPA setup: the same encoder sees the same context tokens
(same masks, schedule, data), the same predictor architecture fills in the target positions;
only its output layer maps to the tubelet's pixels (tubelet x patch x patch x C values) instead
of to encoder features, and there is no EMA teacher. So latent and pixel targets can be
compared step for step, as in the V-JEPA paper's ablation. Per-patch normalisation of the
targets (each channel of a tubelet to zero mean, unit std) is VideoMAE's `norm_pix_loss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from jepa.models.args import PredictorArgs
from jepa.models.init import init_weights_
from jepa.models.predictor import VisionTransformerPredictor
from jepa.train.health import effective_rank, feature_std
from jepa.train.objective import Objective
from jepa.train.step import masked_prediction_loss


def patchify(clips: Tensor, patch_size: int, tubelet_size: int) -> Tensor:
    """(B, C, T, H, W) -> (B, N, tubelet * patch * patch, C) in the encoder's t-major token order."""
    if clips.ndim != 5:
        raise ValueError(f"expected clips (B, C, T, H, W), got shape {tuple(clips.shape)}")
    b, c, t, h, w = clips.shape
    if t % tubelet_size or h % patch_size or w % patch_size:
        raise ValueError(f"clip {t}x{h}x{w} does not tile into tubelets {tubelet_size}x{patch_size}x{patch_size}")
    return rearrange(
        clips, "b c (t kt) (h ph) (w pw) -> b (t h w) (kt ph pw) c", kt=tubelet_size, ph=patch_size, pw=patch_size
    )


def pixel_targets(
    clips: Tensor, patch_size: int, tubelet_size: int, normalize: bool = True, eps: float = 1e-6
) -> Tensor:
    """(B, N, tubelet * patch * patch * C) regression targets; per-tubelet, per-channel normalised if asked."""
    x = patchify(clips.float(), patch_size, tubelet_size)
    if normalize:
        x = (x - x.mean(dim=2, keepdim=True)) / (x.var(dim=2, unbiased=True, keepdim=True).sqrt() + eps)
    return x.flatten(2)


class PixelPredictor(VisionTransformerPredictor):
    """The JEPA predictor with its output layer sized to a tubelet's pixels (`out_dim`)."""

    def __init__(self, out_dim: int, args: PredictorArgs | None = None, **changes: Any) -> None:
        super().__init__(args, **changes)
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        self.predictor_proj = nn.Linear(self.predictor_embed_dim, out_dim)
        init_weights_(self.predictor_proj, self.args.init_std)
        self.config["out_dim"] = out_dim


class PixelMAE(Objective):
    """Context encoder + pixel predictor; forward(clips, masks_ctx, masks_tgt) -> (loss, stats) like `JEPA`."""

    def __init__(
        self,
        encoder: nn.Module,
        predictor: PixelPredictor,
        loss_exp: float = 2.0,
        per_config_mask_tokens: bool = False,
        normalize_targets: bool = True,
    ) -> None:
        super().__init__()
        expected = encoder.in_chans * encoder.tubelet_size * encoder.patch_size**2
        if predictor.predictor_proj.out_features != expected:
            raise ValueError(
                f"predictor outputs {predictor.predictor_proj.out_features} values per token, a tubelet has {expected}"
            )
        self.encoder = encoder
        self.predictor = predictor
        self.loss_exp = loss_exp
        self.per_config_mask_tokens = per_config_mask_tokens
        self.normalize_targets = normalize_targets

    @torch.no_grad()
    def targets(self, clips: Tensor) -> Tensor:
        """Per-tubelet (normalised) pixels of the whole clip."""
        return pixel_targets(clips, self.encoder.patch_size, self.encoder.tubelet_size, self.normalize_targets)

    def forward(
        self,
        clips: Tensor,
        masks_ctx: Sequence[Tensor],
        masks_tgt: Sequence[Tensor],
        targets: Tensor | None = None,
        first_config: int = 0,
        num_configs: int = 0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss averaged over mask configs; `feat_std` is measured on the context tokens (no extra pass).

        `num_configs` is taken so the Trainer calls objectives alike; with no terms beyond the
        per-config losses there is nothing to weight by it.
        """
        pixels = self.targets(clips) if targets is None else targets
        loss, first, _ = masked_prediction_loss(
            self.encoder,
            self.predictor,
            clips,
            masks_ctx,
            masks_tgt,
            pixels,
            self.loss_exp,
            self.per_config_mask_tokens,
            first_config,
        )
        if first_config:
            return loss, {}  # the statistics are config 0's, as in the JEPA objective
        return loss, {"feat_std": feature_std(first.detach()), "rank_student": effective_rank(first)}

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """Modules saved in checkpoints, by prefix; no target encoder, so loaders fall back to `encoder`."""
        return {"encoder": self.encoder, "predictor": self.predictor}

"""Action-conditioned predictor: how actions move the latents of a frozen encoder (V-JEPA 2-AC).

Input: per-frame latent tokens z (B, T, N, D) of a frozen encoder (each frame encoded alone),
the action taken after each frame (B, T, A) and the proprioceptive state seen with it (B, T, S).
Each frame becomes the token group [action, state, (extrinsics), patch_1 .. patch_N]; attention
is full inside a group and causal across groups, so the output at frame t, a prediction of the
latents of frame t + 1, depends on frames <= t only. Patch tokens get 3D RoPE over (frame, row,
column); conditioning tokens only its temporal part (their row/column channels stay unrotated),
as released.

Parameter names follow the released checkpoint (`predictor_embed`, `action_encoder`,
`state_encoder`, `extrinsics_encoder`, `predictor_blocks.N.*`, `predictor_norm`,
`predictor_proj`), so `create_ac_predictor("vjepa2_ac_vitg")` loads the released ViT-g AC
predictor with `load_state_dict(clean_released_state_dict(ckpt["predictor"]))`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from jepa.models.args import ACPredictorArgs
from jepa.models.init import drop_path_rates, init_weights_, rescale_blocks_
from jepa.models.layers import NORM_EPS, Block, run_blocks
from jepa.models.registry import Registry

AC_PREDICTORS: Registry[ACPredictorArgs] = Registry("AC predictor")
# The released V-JEPA 2-AC predictor on ViT-g/16 at 256 px: 7-d actions and states (xyz delta,
# rotation delta, gripper), a 6-d extrinsics encoder that exists in the checkpoint even though
# the released model does not feed it.
AC_PREDICTORS.register("vjepa2_ac_vitg", ACPredictorArgs(extrinsics_dim=6))
# The small predictor of the bundled CPU benchmark: ViT-tiny latents of 64 px frames.
AC_PREDICTORS.register(
    "ac_tiny",
    ACPredictorArgs(embed_dim=192, predictor_embed_dim=128, depth=3, num_heads=4, grid_size=(4, 4),
                    action_dim=2, state_dim=2),
)  # fmt: skip


def frame_causal_mask(num_frames: int, tokens_per_frame: int, device: torch.device | None = None) -> Tensor:
    """Bool (N, N) mask, True = may attend: token i sees token j iff frame(j) <= frame(i)."""
    if num_frames < 1 or tokens_per_frame < 1:
        raise ValueError(f"need num_frames >= 1 and tokens_per_frame >= 1, got {num_frames}, {tokens_per_frame}")
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)
    return frame[None, :] <= frame[:, None]


class ACPredictor(nn.Module):
    """Block-causal transformer over interleaved [action, state, patches] token groups.

    Built from `ACPredictorArgs` (keyword arguments replace its fields); `self.config` is the
    args as a dict, which saved world models store.
    """

    def __init__(self, args: ACPredictorArgs | None = None, **changes: Any) -> None:
        super().__init__()
        a = self.args = (args or ACPredictorArgs()).replace(**changes)
        self.config: dict[str, Any] = a.as_dict()
        self.embed_dim = a.embed_dim
        self.grid_size = a.grid_size
        self.num_patches = a.grid_size[0] * a.grid_size[1]
        self.action_dim, self.state_dim, self.extrinsics_dim = a.action_dim, a.state_dim, a.extrinsics_dim
        self.activation_checkpointing = a.activation_checkpointing
        width = a.predictor_embed_dim
        self.predictor_embed = nn.Linear(a.embed_dim, width)
        self.action_encoder = nn.Linear(a.action_dim, width)
        self.state_encoder = nn.Linear(a.state_dim, width)
        self.extrinsics_encoder = nn.Linear(a.extrinsics_dim, width) if a.extrinsics_dim else None
        self.predictor_blocks = nn.ModuleList(
            Block(width, a.num_heads, a.mlp_ratio, qkv_bias=True, drop_path=r, rope_layout=a.rope_layout)
            for r in drop_path_rates(a.drop_path_rate, a.depth)
        )
        self.predictor_norm = nn.LayerNorm(width, eps=NORM_EPS)
        self.predictor_proj = nn.Linear(width, a.embed_dim)
        # As released: truncated-normal weights, zero biases, residual outputs of block i / sqrt(2(i+1)).
        init_weights_(self, a.init_std)
        rescale_blocks_(self.predictor_blocks)

    def _positions(self, num_frames: int, num_cond: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(frame, row, col) of every token, and which of the three RoPE axes rotate it."""
        gh, gw = self.grid_size
        rows = torch.arange(gh, device=device).repeat_interleave(gw)
        cols = torch.arange(gw, device=device).repeat(gh)
        patch = torch.stack((torch.zeros_like(rows), rows, cols), -1)
        cond = torch.zeros(num_cond, 3, dtype=patch.dtype, device=device)
        per_frame = torch.cat((cond, patch))  # (K + N, 3)
        pos = per_frame.repeat(num_frames, 1)
        pos[:, 0] = torch.arange(num_frames, device=device).repeat_interleave(len(per_frame))
        axis = torch.ones(len(per_frame), 3, dtype=torch.bool, device=device)
        axis[:num_cond, 1:] = False  # conditioning tokens: temporal rotation only
        return pos.float(), axis.repeat(num_frames, 1)

    def forward(self, z: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None = None) -> Tensor:
        """z (B, T, N, D), actions (B, T, A), states (B, T, S) [, extrinsics (B, T, E)]
        -> (B, T, N, D): entry t predicts the latents of frame t + 1."""
        if z.ndim != 4 or z.shape[2] != self.num_patches or z.shape[3] != self.embed_dim:
            raise ValueError(f"z must be (B, T, {self.num_patches}, {self.embed_dim}), got {tuple(z.shape)}")
        b, t = z.shape[:2]
        if actions.shape != (b, t, self.action_dim):
            raise ValueError(f"actions must be {(b, t, self.action_dim)}, got {tuple(actions.shape)}")
        if states.shape != (b, t, self.state_dim):
            raise ValueError(f"states must be {(b, t, self.state_dim)}, got {tuple(states.shape)}")
        cond = [self.action_encoder(actions), self.state_encoder(states)]
        if extrinsics is not None:
            if self.extrinsics_encoder is None:
                raise ValueError("this predictor has no extrinsics encoder (extrinsics_dim=0)")
            if extrinsics.shape != (b, t, self.extrinsics_dim):
                raise ValueError(f"extrinsics must be {(b, t, self.extrinsics_dim)}, got {tuple(extrinsics.shape)}")
            cond.append(self.extrinsics_encoder(extrinsics))
        k = len(cond)
        x = torch.cat([c.unsqueeze(2) for c in cond] + [self.predictor_embed(z)], dim=2)  # (B, T, K+N, C)
        x = x.flatten(1, 2)
        pos, axis_mask = self._positions(t, k, z.device)
        mask = frame_causal_mask(t, k + self.num_patches, z.device)
        rope = self.predictor_blocks[0].attn.rope  # every block rotates by the same positions
        if rope is not None and rope.head_dim % 2 == 0:
            # cos/sin tables once per forward instead of twice per block: same numbers, less work
            tables = rope.tables(pos, axis_mask, torch.float64 if x.dtype == torch.float64 else torch.float32)
            x = run_blocks(self.predictor_blocks, x, self.activation_checkpointing, pos=tables, attn_mask=mask)
        else:
            x = run_blocks(
                self.predictor_blocks, x, self.activation_checkpointing, pos=pos, attn_mask=mask, axis_mask=axis_mask
            )
        x = x.unflatten(1, (t, k + self.num_patches))[:, :, k:]
        return self.predictor_proj(self.predictor_norm(x))


def create_ac_predictor(name: str, **changes: Any) -> ACPredictor:
    """Build a registered AC predictor (see AC_PREDICTORS) with ACPredictorArgs fields replaced."""
    return ACPredictor(AC_PREDICTORS.args(name, **changes))


def clean_released_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Strip the DDP / wrapper prefixes (`module.`, `backbone.`) of released checkpoints."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "backbone."):
            key = key.removeprefix(prefix)
        out[key] = value
    return out

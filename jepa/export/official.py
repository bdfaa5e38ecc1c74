"""Read official V-JEPA 1 / V-JEPA 2 `.pt` checkpoints (never unpickling code).

Layout understood (see `tests/data/official_checkpoint_layout.json` for full shapes):

Training checkpoint = `torch.save` dict with keys `encoder`, `predictor`, `target_encoder`
(state dicts) and `opt`, `scaler`, `epoch`, `loss`, `batch_size`, `world_size`, `lr`
(ignored here). A file holding only some of the three model entries (the public releases)
or a bare encoder state dict also loads. Model keys carry the wrapper prefixes `module.`
(DDP) and `backbone.` (multi-mask wrapper), usually `module.backbone.`; any leading run of
them is stripped. After stripping, names are exactly ours:

- encoder: `patch_embed.proj.{weight,bias}` (Conv3d weight `(D, C, tubelet, patch, patch)`),
  `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.{weight,bias}`,
  `norm.{weight,bias}`; V-JEPA 1 adds the fixed sin-cos table `pos_embed` `(1, T'*H'*W', D)`,
  V-JEPA 2 has none (3D RoPE inside attention).
- predictor: `predictor_embed` `(P, D)`, `mask_tokens.0..M-1` `(1, 1, P)`,
  `predictor_blocks.N.*` (same block names), `predictor_norm`, `predictor_proj` `(D, P)`;
  V-JEPA 1 adds `predictor_pos_embed` `(1, T'*H'*W', P)`.

What the shapes give: width, depth, patch and tubelet size, channels, MLP ratio, qkv bias,
position type, mask-token count, and (V-JEPA 1) the token grid. What they do not give: the
number of heads (taken from the registry size with that width and depth, else width / 64),
the predictor's heads (12 as released for V-JEPA 2; the encoder's for V-JEPA 1), and for
RoPE models the training resolution (256 px, 16 frames as released; RoPE works at any
size anyway). Pass any of these explicitly to override; every guess is recorded in `notes`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from jepa.checkpoint_files import CheckpointMismatchError, load_torch_file
from jepa.export.raw import RawCheckpoint
from jepa.models.args import EncoderArgs, PredictorArgs
from jepa.models.registry import ENCODERS

WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "backbone.")
MODEL_KEYS: tuple[str, ...] = ("encoder", "predictor", "target_encoder")
RELEASED_IMG_SIZE = 256
RELEASED_NUM_FRAMES = 16
RELEASED_PRED_HEADS = 12


def strip_prefixes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop any leading run of `module.` / `backbone.` from every key."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        if key in out:
            raise CheckpointMismatchError(f"two checkpoint keys map to {key!r} after stripping {WRAPPER_PREFIXES}")
        out[key] = value
    return out


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def split_roles(ckpt: Any, source: str) -> dict[str, dict[str, Tensor]]:
    """Model state dicts by role from a training checkpoint or a bare encoder/predictor state dict."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointMismatchError(f"{source}: expected a dict, got {type(ckpt).__name__}")
    roles = {k: strip_prefixes(ckpt[k]) for k in MODEL_KEYS if k in ckpt and _is_state_dict(ckpt[k])}
    if roles:
        return roles
    if _is_state_dict(ckpt):
        state = strip_prefixes(ckpt)
        if "patch_embed.proj.weight" in state:
            return {"encoder": state}
        if "predictor_embed.weight" in state:
            return {"predictor": state}
    raise CheckpointMismatchError(
        f"{source}: not a V-JEPA checkpoint: no {MODEL_KEYS} entries and no encoder/predictor weights; "
        f"top-level keys: {sorted(map(str, ckpt))[:20]}"
    )


def count_blocks(state: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if not found:
        raise CheckpointMismatchError(f"no '{prefix}N.*' keys: cannot infer the depth")
    if found != set(range(len(found))):
        raise CheckpointMismatchError(f"'{prefix}N' indices are not contiguous from 0: {sorted(found)}")
    return len(found)


def require_key(state: Mapping[str, Tensor], key: str, what: str) -> Tensor:
    if key not in state:
        raise CheckpointMismatchError(f"{what}: required key {key!r} not found; keys start with {sorted(state)[:8]}")
    return state[key]


def mlp_ratio_of(hidden: int, dim: int) -> float:
    """A ratio r with int(dim * r) == hidden (the block builds int(dim * mlp_ratio) units)."""
    for ratio in (hidden / dim, (hidden + 0.5) / dim):
        if int(dim * ratio) == hidden:
            return ratio
    raise CheckpointMismatchError(f"no mlp_ratio gives {hidden} hidden units for width {dim}")


def _grid_from_rows(rows: int, tubelet: int, num_frames: int | None) -> tuple[int, int]:
    """(num_frames, square image side in tokens) for a sin-cos table of `rows` positions."""
    candidates = [num_frames] if num_frames else [16, 8, 32, 64, 4, 2, 1]
    for frames in candidates:
        t = max(frames // tubelet, 1)
        if rows % t == 0 and math.isqrt(rows // t) ** 2 == rows // t:
            return frames, math.isqrt(rows // t)
    raise CheckpointMismatchError(
        f"cannot split {rows} position rows into frames x square grid for frames {candidates}; pass num_frames/img_size"
    )


def infer_encoder_args(state: Mapping[str, Tensor], notes: list[str], **overrides: Any) -> EncoderArgs:
    """EncoderArgs from an encoder state dict; `overrides` win over inference."""
    weight = require_key(state, "patch_embed.proj.weight", "encoder")
    if weight.ndim != 5 or weight.shape[3] != weight.shape[4]:
        raise CheckpointMismatchError(f"patch_embed.proj.weight must be (D, C, t, p, p), got {tuple(weight.shape)}")
    dim, in_chans, tubelet, patch = (
        int(weight.shape[0]),
        int(weight.shape[1]),
        int(weight.shape[2]),
        int(weight.shape[3]),
    )
    depth = count_blocks(state, "blocks.")
    hidden = int(require_key(state, "blocks.0.mlp.fc1.weight", "encoder").shape[0])
    cfg: dict[str, Any] = dict(
        embed_dim=dim, depth=depth, in_chans=in_chans, tubelet_size=tubelet, patch_size=patch,
        mlp_ratio=mlp_ratio_of(hidden, dim), qkv_bias="blocks.0.attn.qkv.bias" in state,
        qk_norm="blocks.0.attn.q_norm.weight" in state, pos_embed="sincos" if "pos_embed" in state else "rope", rope_layout="released",
    )  # fmt: skip
    sizes = [(n, s) for n, s in ENCODERS.items() if (s.embed_dim, s.depth) == (dim, depth)]
    if sizes and int(dim * sizes[0][1].mlp_ratio) == hidden:
        cfg["mlp_ratio"] = sizes[0][1].mlp_ratio  # the exact registered value, e.g. 48/11 for ViT-g
    if "num_heads" not in overrides:
        if sizes:
            cfg["num_heads"] = sizes[0][1].num_heads
            notes.append(f"num_heads={cfg['num_heads']} taken from {sizes[0][0]} (width {dim}, depth {depth})")
        elif dim % 64 == 0:
            cfg["num_heads"] = dim // 64
            notes.append(f"num_heads={cfg['num_heads']} guessed as width / 64 (no registered size is {dim} x {depth})")
        else:
            raise CheckpointMismatchError(f"cannot infer num_heads for width {dim}, depth {depth}: pass num_heads=")
    if cfg["pos_embed"] == "sincos" and "img_size" not in overrides:
        rows = int(state["pos_embed"].shape[1])
        frames, side = _grid_from_rows(rows, tubelet, overrides.get("num_frames"))
        cfg.update(num_frames=frames, img_size=side * patch)
        notes.append(f"sin-cos table of {rows} rows read as {frames} frames at {side * patch} px")
    elif cfg["pos_embed"] == "rope":
        cfg.update(img_size=RELEASED_IMG_SIZE, num_frames=RELEASED_NUM_FRAMES)
        if "img_size" not in overrides or "num_frames" not in overrides:
            notes.append(f"build size {RELEASED_NUM_FRAMES} frames at {RELEASED_IMG_SIZE} px (RoPE runs at any size)")
    return EncoderArgs.from_dict({**cfg, **overrides})


def infer_predictor_args(
    state: Mapping[str, Tensor], encoder: EncoderArgs, notes: list[str], **overrides: Any
) -> PredictorArgs:
    """PredictorArgs from a predictor state dict and its encoder's args; `overrides` win."""
    embed = require_key(state, "predictor_embed.weight", "predictor")
    pred_dim, dim = int(embed.shape[0]), int(embed.shape[1])
    hidden = int(require_key(state, "predictor_blocks.0.mlp.fc1.weight", "predictor").shape[0])
    num_tokens = sum(1 for k in state if re.fullmatch(r"mask_tokens\.\d+", k))
    sincos = "predictor_pos_embed" in state
    cfg: dict[str, Any] = dict(
        img_size=encoder.img_size, patch_size=encoder.patch_size, num_frames=encoder.num_frames,
        tubelet_size=encoder.tubelet_size, embed_dim=dim, predictor_embed_dim=pred_dim, depth=count_blocks(state, "predictor_blocks."),
        mlp_ratio=mlp_ratio_of(hidden, pred_dim), qkv_bias="predictor_blocks.0.attn.qkv.bias" in state,
        num_mask_tokens=max(num_tokens, 1), pos_embed="sincos" if sincos else "rope", rope_layout="released",
    )  # fmt: skip
    if "num_heads" not in overrides:
        heads = encoder.num_heads if sincos else RELEASED_PRED_HEADS
        if pred_dim % heads:
            raise CheckpointMismatchError(f"cannot infer predictor heads for width {pred_dim}: pass pred_num_heads=")
        cfg["num_heads"] = heads
        origin = "the encoder's (V-JEPA 1)" if sincos else "the released V-JEPA 2 value"
        notes.append(f"predictor num_heads={heads}: {origin}")
    return PredictorArgs.from_dict({**cfg, **overrides})


def read_official(
    path: str | Path,
    encoder_overrides: Mapping[str, Any] | None = None,
    predictor_overrides: Mapping[str, Any] | None = None,
) -> RawCheckpoint:
    """Read an official `.pt` (or a bare state dict in `.pt` / `.safetensors`) into a RawCheckpoint."""
    path = Path(path)
    states = split_roles(load_torch_file(path), str(path))
    notes: list[str] = []
    enc_state = states.get("target_encoder", states.get("encoder"))
    if enc_state is None:
        raise CheckpointMismatchError(f"{path} holds no encoder weights (only {sorted(states)}); an encoder is needed")
    enc_cfg = infer_encoder_args(enc_state, notes, **dict(encoder_overrides or {}))
    pred_cfg = None
    if "predictor" in states:
        pred_cfg = infer_predictor_args(states["predictor"], enc_cfg, notes, **dict(predictor_overrides or {}))
    return RawCheckpoint("official", str(path), states, enc_cfg, pred_cfg, notes)

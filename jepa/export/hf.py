"""HF transformers `VJEPA2Model` layout: name map both ways, export to a directory, read one.

The HF port keeps the released architecture but renames: fused `qkv` becomes separate
`query`/`key`/`value`, `blocks.N` -> `encoder.layer.N` (predictor: `predictor.layer.N`),
`attn` -> `attention`, `patch_embed.` -> `encoder.embeddings.patch_embeddings.`,
`norm` -> `encoder.layernorm`, and the predictor's `mask_tokens.0..M-1` (each (1, 1, P))
are stacked into one `(M, 1, 1, P)` parameter. Conversion is a pure rename / split / stack,
so ours -> HF -> ours is bit-exact.

HF only implements 3D RoPE in the released layout with a square crop, so V-JEPA 1 (sin-cos)
or interleaved-RoPE models cannot be exported. Writing needs no `transformers` install: a
`config.json` (model_type `vjepa2`) and `model.safetensors` are all `from_pretrained` reads.
Note: HF's predictor always uses mask token 1 (`mask_index=1` hard-wired); pass
`mask_index=1` to our predictor to reproduce its outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from jepa.atomic import atomic_file, write_text_atomic
from jepa.checkpoint_files import CheckpointMismatchError, load_torch_file, read_json, read_safetensors
from jepa.export.raw import RawCheckpoint
from jepa.models.args import EncoderArgs, PredictorArgs
from jepa.models.layers import NORM_EPS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
# Heads trained on top of the encoder in VJEPA2ForVideoClassification; not part of the encoder.
HEAD_PREFIXES: tuple[str, ...] = ("pooler.", "classifier.")

# Inside one transformer block: our suffix -> HF suffix (qkv is handled separately).
_BLOCK_NAMES: dict[str, str] = {
    "norm1": "norm1",
    "attn.proj": "attention.proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_QKV = ("query", "key", "value")
_ENC_TOP: dict[str, str] = {"patch_embed.proj": "encoder.embeddings.patch_embeddings.proj", "norm": "encoder.layernorm"}
_PRED_TOP: dict[str, str] = {
    "predictor_embed": "predictor.embeddings.predictor_embeddings",
    "predictor_norm": "predictor.layernorm",
    "predictor_proj": "predictor.proj",
}
_MASK_TOKENS_HF = "predictor.embeddings.mask_tokens"


def _split_param(key: str) -> tuple[str, str]:
    module, _, param = key.rpartition(".")
    if param not in ("weight", "bias"):
        raise CheckpointMismatchError(f"no HF name for {key!r}")
    return module, param


def _blocks_to_hf(state: Mapping[str, Tensor], ours: str, hf: str, top: Mapping[str, str]) -> dict[str, Tensor]:
    """Rename one model (encoder or predictor, without mask tokens) from our names to HF's."""
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if param not in ("weight", "bias"):
            unknown.append(key)
        elif module in top:
            out[f"{top[module]}.{param}"] = value
        elif module.startswith(ours) and module.count(".") >= 1:
            idx, _, inner = module[len(ours) :].partition(".")
            if inner == "attn.qkv":
                for name, part in zip(_QKV, value.chunk(3, dim=0), strict=True):
                    out[f"{hf}{idx}.attention.{name}.{param}"] = part.clone()
            elif inner in _BLOCK_NAMES:
                out[f"{hf}{idx}.{_BLOCK_NAMES[inner]}.{param}"] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointMismatchError(f"these tensors have no place in HF VJEPA2Model: {sorted(unknown)}")
    return out


def encoder_to_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our encoder state dict -> HF `VJEPA2Model` encoder keys."""
    if "pos_embed" in state:
        raise CheckpointMismatchError(
            "HF VJEPA2Model has no sin-cos position table: V-JEPA 1 encoders cannot be exported"
        )
    return _blocks_to_hf(state, "blocks.", "encoder.layer.", _ENC_TOP)


def predictor_to_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our predictor state dict -> HF keys, with the mask tokens stacked to (M, 1, 1, P)."""
    if "predictor_pos_embed" in state:
        raise CheckpointMismatchError(
            "HF VJEPA2Model has no sin-cos predictor table: V-JEPA 1 predictors cannot be exported"
        )
    tokens = sorted((k for k in state if k.startswith("mask_tokens.")), key=lambda k: int(k.split(".")[1]))
    rest = {k: v for k, v in state.items() if not k.startswith("mask_tokens.")}
    out = _blocks_to_hf(rest, "predictor_blocks.", "predictor.layer.", _PRED_TOP)
    if tokens:
        out[_MASK_TOKENS_HF] = torch.stack([state[k] for k in tokens])
    return out


def _blocks_from_hf(state: Mapping[str, Tensor], hf: str, ours: str, top: Mapping[str, str]) -> dict[str, Tensor]:
    inverse_top = {v: k for k, v in top.items()}
    inverse_block = {v: k for k, v in _BLOCK_NAMES.items()}
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    unknown: list[str] = []
    for key, value in state.items():
        module, param = _split_param(key)
        if module in inverse_top:
            out[f"{inverse_top[module]}.{param}"] = value
            continue
        idx, _, inner = module[len(hf) :].partition(".")
        if inner.startswith("attention.") and inner.split(".", 1)[1] in _QKV:
            qkv.setdefault((idx, param), {})[inner.split(".", 1)[1]] = value
        elif inner in inverse_block:
            out[f"{ours}{idx}.{inverse_block[inner]}.{param}"] = value
        else:
            unknown.append(key)
    for (idx, param), parts in qkv.items():
        if set(parts) != set(_QKV):
            raise CheckpointMismatchError(f"layer {idx} {param}: has {sorted(parts)} of query/key/value")
        out[f"{ours}{idx}.attn.qkv.{param}"] = torch.cat([parts[n] for n in _QKV], dim=0)
    if unknown:
        raise CheckpointMismatchError(f"unknown HF VJEPA2Model tensors: {sorted(unknown)}")
    return out


def hf_to_ours(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """HF `VJEPA2Model` state dict -> (our encoder state, our predictor state (may be empty)).

    A `VJEPA2ForVideoClassification` state dict also works: its `vjepa2.` prefix is dropped
    and the pooler / classifier heads are left out.
    """
    clean = {k.removeprefix("vjepa2."): v for k, v in state.items()}
    clean = {k: v for k, v in clean.items() if not k.startswith(HEAD_PREFIXES)}
    enc = {k: v for k, v in clean.items() if k.startswith("encoder.")}
    pred = {k: v for k, v in clean.items() if k.startswith("predictor.") and k != _MASK_TOKENS_HF}
    other = sorted(set(clean) - set(enc) - set(pred) - {_MASK_TOKENS_HF})
    if other:
        raise CheckpointMismatchError(f"tensors outside encoder./predictor. in an HF VJEPA2 checkpoint: {other}")
    enc_ours = _blocks_from_hf(enc, "encoder.layer.", "blocks.", _ENC_TOP)
    pred_ours = _blocks_from_hf(pred, "predictor.layer.", "predictor_blocks.", _PRED_TOP) if pred else {}
    if _MASK_TOKENS_HF in clean:
        for i, token in enumerate(clean[_MASK_TOKENS_HF]):
            pred_ours[f"mask_tokens.{i}"] = token.clone()
    return enc_ours, pred_ours


def hf_config(
    encoder: EncoderArgs | Mapping[str, Any], predictor: PredictorArgs | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`VJEPA2Config` fields (as a JSON dict) for our encoder / predictor Args (or their dicts)."""
    e = EncoderArgs.of(encoder)
    if e.pos_embed != "rope" or e.rope_layout != "released":
        raise CheckpointMismatchError(
            f"HF VJEPA2Model implements only 3D RoPE in the released layout; this encoder has "
            f"pos_embed={e.pos_embed!r}, rope_layout={e.rope_layout!r}"
        )
    if e.qk_norm:
        raise CheckpointMismatchError("HF VJEPA2Model has no query/key norm: a qk_norm=True encoder cannot be exported")
    if e.img_size[0] != e.img_size[1]:
        raise CheckpointMismatchError(f"HF VJEPA2 assumes a square crop; this model is {e.img_size[0]}x{e.img_size[1]}")
    cfg: dict[str, Any] = {
        "model_type": "vjepa2", "architectures": ["VJEPA2Model"], "crop_size": e.img_size[0],
        "frames_per_clip": e.num_frames, "patch_size": e.patch_size, "tubelet_size": e.tubelet_size,
        "in_chans": e.in_chans, "hidden_size": e.embed_dim, "num_hidden_layers": e.depth,
        "num_attention_heads": e.num_heads, "mlp_ratio": float(e.mlp_ratio), "qkv_bias": e.qkv_bias,
        "layer_norm_eps": NORM_EPS, "hidden_act": "gelu", "drop_path_rate": 0.0,
    }  # fmt: skip
    if predictor is not None:
        p = PredictorArgs.of(predictor)
        if p.pos_embed != "rope" or p.rope_layout != "released":
            raise CheckpointMismatchError("HF VJEPA2Model's predictor implements only released-layout 3D RoPE")
        if not p.qkv_bias:
            raise CheckpointMismatchError(
                "HF VJEPA2Model's predictor shares qkv_bias with the encoder; need qkv_bias=True"
            )
        cfg.update(
            pred_hidden_size=p.predictor_embed_dim, pred_num_hidden_layers=p.depth,
            pred_num_attention_heads=p.num_heads, pred_mlp_ratio=float(p.mlp_ratio),
            pred_num_mask_tokens=p.num_mask_tokens, pred_zero_init_mask_tokens=p.zero_init_mask_tokens,
        )  # fmt: skip
    return cfg


def args_from_hf(cfg: Mapping[str, Any]) -> tuple[EncoderArgs, PredictorArgs]:
    """(encoder, predictor) Args for an HF `VJEPA2Config` dict; its defaults are HF's (ViT-L/16 at 256 px)."""
    if cfg.get("model_type") != "vjepa2":
        raise CheckpointMismatchError(f"config.json model_type is {cfg.get('model_type')!r}, expected 'vjepa2'")
    if cfg.get("hidden_act", "gelu") != "gelu" or abs(float(cfg.get("layer_norm_eps", NORM_EPS)) - NORM_EPS) > 1e-12:
        raise CheckpointMismatchError(
            "only hidden_act='gelu' and layer_norm_eps=1e-6 (the released values) are supported"
        )
    patch = cfg.get("patch_size", 16)
    patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
    enc = EncoderArgs(
        img_size=int(cfg.get("crop_size", 256)), patch_size=patch, num_frames=int(cfg.get("frames_per_clip", 64)),
        tubelet_size=int(cfg.get("tubelet_size", 2)), in_chans=int(cfg.get("in_chans", 3)),
        embed_dim=int(cfg.get("hidden_size", 1024)), depth=int(cfg.get("num_hidden_layers", 24)),
        num_heads=int(cfg.get("num_attention_heads", 16)), mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
        qkv_bias=bool(cfg.get("qkv_bias", True)),
    )  # fmt: skip
    pred = PredictorArgs(
        predictor_embed_dim=int(cfg.get("pred_hidden_size", 384)),
        depth=int(cfg.get("pred_num_hidden_layers", 12)), num_heads=int(cfg.get("pred_num_attention_heads", 12)),
        mlp_ratio=float(cfg.get("pred_mlp_ratio", 4.0)), qkv_bias=enc.qkv_bias,
        num_mask_tokens=int(cfg.get("pred_num_mask_tokens", 10)),
        zero_init_mask_tokens=bool(cfg.get("pred_zero_init_mask_tokens", True)),
    ).for_encoder(enc)  # fmt: skip
    return enc, pred


def save_hf(
    directory: str | Path,
    encoder_state: Mapping[str, Tensor],
    encoder_config: EncoderArgs | Mapping[str, Any],
    predictor_state: Mapping[str, Tensor] | None = None,
    predictor_config: PredictorArgs | Mapping[str, Any] | None = None,
) -> Path:
    """Write `config.json` + `model.safetensors` that `transformers.VJEPA2Model.from_pretrained` opens.

    Without a predictor, HF builds its predictor from defaults and initialises it randomly
    (it warns); encoder features (`get_vision_features`) are unaffected.
    """
    if predictor_state is not None and predictor_config is None:
        raise ValueError("predictor_state needs predictor_config")
    cfg = hf_config(encoder_config, predictor_config if predictor_state is not None else None)
    tensors = encoder_to_hf(encoder_state)
    if predictor_state is not None:
        tensors.update(predictor_to_hf(predictor_state))
    return write_hf_dir(directory, tensors, cfg)


def write_hf_dir(directory: str | Path, tensors: Mapping[str, Tensor], cfg: Mapping[str, Any]) -> Path:
    """`model.safetensors` (CPU, contiguous) + `config.json`: all `from_pretrained` reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_file(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_text_atomic(directory / CONFIG_FILE, json.dumps(cfg, indent=2) + "\n")
    return directory


def read_hf_weights(directory: Path) -> dict[str, Tensor]:
    if (directory / WEIGHTS_FILE).is_file():
        return read_safetensors(directory / WEIGHTS_FILE)
    if (directory / INDEX_FILE).is_file():
        index = read_json(directory / INDEX_FILE)
        state: dict[str, Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(read_safetensors(directory / shard))
        return state
    if (directory / BIN_FILE).is_file():
        return dict(load_torch_file(directory / BIN_FILE))
    raise FileNotFoundError(f"{directory}: no {WEIGHTS_FILE}, {INDEX_FILE} or {BIN_FILE}")


def is_hf_dir(directory: str | Path) -> bool:
    """True for a directory whose config.json declares model_type 'vjepa2'."""
    cfg = Path(directory) / CONFIG_FILE
    if not cfg.is_file():
        return False
    config = read_json(cfg)  # a damaged config.json raises, naming the file
    return isinstance(config, dict) and config.get("model_type") == "vjepa2"


def read_hf(directory: str | Path) -> RawCheckpoint:
    """Read an HF `VJEPA2Model` (or `VJEPA2ForVideoClassification`) directory into our names."""
    directory = Path(directory)
    cfg = read_json(directory / CONFIG_FILE)
    enc_cfg, pred_cfg = args_from_hf(cfg)
    enc_state, pred_state = hf_to_ours(read_hf_weights(directory))
    states = {"encoder": enc_state}
    if pred_state:
        states["predictor"] = pred_state
    return RawCheckpoint("hf", str(directory), states, enc_cfg, pred_cfg if pred_state else None)

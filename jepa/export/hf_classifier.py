"""HF transformers `VJEPA2ForVideoClassification`: the attentive probe head, both ways.

HF's head is the released probe: self-attention layers over all encoder tokens, one learned
query reading them through a cross-attention layer (no output projection), a linear
classifier. Ours is `jepa.eval.probe.AttentiveClassifier` with one query. Names differ and HF
splits the fused projections; the conversion is a rename / split / stack, so ours -> HF ->
ours is bit-exact:

    HF pooler.self_attention_layers.N.          ours pooler.blocks.N.
        layer_norm1 / layer_norm2                   norm1 / norm2
        self_attn.{q,k,v}_proj                      attn.qkv (stacked q, k, v)
        self_attn.out_proj                          attn.proj
        mlp.fc1 / mlp.fc2                           mlp.fc1 / mlp.fc2
    HF pooler.cross_attention_layer.            ours pooler.cross_attention_block.
        layer_norm1 / layer_norm2                   norm1 / norm2
        cross_attn.q_proj                           xattn.q
        cross_attn.{k,v}_proj                       xattn.kv (stacked k, v)
        mlp.fc1 / mlp.fc2                           mlp.fc1 / mlp.fc2
    HF pooler.query_tokens, classifier          ours pooler.query_tokens, linear

HF sizes the head from the encoder's config (its heads and MLP ratio, `num_pooler_layers`
self-attention layers, one query), so only a probe of that shape can be written in this layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jepa.checkpoint_files import CheckpointMismatchError, read_json
from jepa.export.hf import CONFIG_FILE, encoder_to_hf, hf_config, predictor_to_hf, read_hf_weights, write_hf_dir
from jepa.models.args import EncoderArgs, PredictorArgs

# One transformer-layer tensor in HF's pooler: (ours, HF) module suffixes; q/k/v are stacked.
_SELF = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.proj": "self_attn.out_proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_CROSS = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "xattn.q": "cross_attn.q_proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_STACKED = {  # ours -> (HF prefix inside the layer, parts in stacking order)
    "attn.qkv": ("self_attn.", ("q_proj", "k_proj", "v_proj")),
    "xattn.kv": ("cross_attn.", ("k_proj", "v_proj")),
}
_OUR_BLOCK = re.compile(r"pooler\.blocks\.(\d+)\.(.+)\.(weight|bias)$")
_OUR_CROSS = re.compile(r"pooler\.cross_attention_block\.(.+)\.(weight|bias)$")
_HF_SELF = re.compile(r"pooler\.self_attention_layers\.(\d+)\.(.+)\.(weight|bias)$")
_HF_CROSS = re.compile(r"pooler\.cross_attention_layer\.(.+)\.(weight|bias)$")


def probe_to_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An `AttentiveClassifier` state dict (one query) -> HF `pooler.*` / `classifier.*` keys."""
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key == "pooler.query_tokens":
            if value.shape[1] != 1:
                raise CheckpointMismatchError(f"HF's pooler has one query; this probe has {value.shape[1]}")
            out[key] = value
        elif key.startswith("linear."):
            out["classifier." + key.removeprefix("linear.")] = value
        elif m := _OUR_BLOCK.match(key):
            _put(out, f"pooler.self_attention_layers.{m[1]}.", m[2], m[3], value, _SELF, unknown, key)
        elif m := _OUR_CROSS.match(key):
            _put(out, "pooler.cross_attention_layer.", m[1], m[2], value, _CROSS, unknown, key)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointMismatchError(
            f"these probe tensors have no place in HF's classification head: {sorted(unknown)}"
        )
    return out


def _put(
    out: dict[str, Tensor], prefix: str, inner: str, param: str, value: Tensor, names: Mapping[str, str],
    unknown: list[str], key: str,
) -> None:  # fmt: skip
    if inner in names:
        out[f"{prefix}{names[inner]}.{param}"] = value
    elif inner in _STACKED:
        within, parts = _STACKED[inner]
        for name, part in zip(parts, value.chunk(len(parts), dim=0), strict=True):
            out[f"{prefix}{within}{name}.{param}"] = part.clone()
    else:
        unknown.append(key)


def probe_from_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """HF `VJEPA2ForVideoClassification` tensors (`pooler.*`, `classifier.*`; others ignored) ->
    an `AttentiveClassifier` state dict."""
    out: dict[str, Tensor] = {}
    stacked: dict[tuple[str, str, str], dict[str, Tensor]] = {}
    unknown: list[str] = []
    inverse = {"self": {v: k for k, v in _SELF.items()}, "cross": {v: k for k, v in _CROSS.items()}}
    for key, value in state.items():
        if key == "pooler.query_tokens":
            out[key] = value
        elif key.startswith("classifier."):
            out["linear." + key.removeprefix("classifier.")] = value
        elif key.startswith("pooler."):
            if m := _HF_SELF.match(key):
                ours, kind, inner, param = f"pooler.blocks.{m[1]}.", "self", m[2], m[3]
            elif m := _HF_CROSS.match(key):
                ours, kind, inner, param = "pooler.cross_attention_block.", "cross", m[1], m[2]
            else:
                unknown.append(key)
                continue
            if inner in inverse[kind]:
                out[f"{ours}{inverse[kind][inner]}.{param}"] = value
            elif inner.rpartition(".")[2] in ("q_proj", "k_proj", "v_proj"):
                stacked.setdefault((ours, kind, param), {})[inner.rpartition(".")[2]] = value
            else:
                unknown.append(key)
    for (ours, kind, param), parts in stacked.items():
        name = "attn.qkv" if kind == "self" else "xattn.kv"
        order = _STACKED[name][1]
        if set(parts) != set(order):
            raise CheckpointMismatchError(f"{ours}{name}.{param}: HF has {sorted(parts)} of {list(order)}")
        out[f"{ours}{name}.{param}"] = torch.cat([parts[p] for p in order], dim=0)
    if unknown:
        raise CheckpointMismatchError(f"unknown tensors in HF's classification head: {sorted(unknown)}")
    if not out:
        raise CheckpointMismatchError("no pooler./classifier. tensors: not a VJEPA2ForVideoClassification checkpoint")
    return out


def probe_config_from_hf(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """`AttentiveClassifier` arguments (labels included) for an HF classification config."""
    labels = _labels(cfg)
    return dict(
        dim=int(cfg.get("hidden_size", 1024)),
        num_classes=len(labels) if labels else int(cfg.get("num_labels", 2)),
        num_queries=1,
        num_heads=int(cfg.get("num_attention_heads", 16)),
        depth=int(cfg.get("num_pooler_layers", 3)),
        mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
        labels=labels,
    )


def _labels(cfg: Mapping[str, Any]) -> list[str] | None:
    id2label = cfg.get("id2label")
    if not id2label:
        return None
    ids = sorted(int(i) for i in id2label)
    if ids != list(range(len(ids))):
        raise CheckpointMismatchError(f"id2label ids are not 0..{len(ids) - 1}: {ids}")
    return [str(id2label[str(i)] if str(i) in id2label else id2label[i]) for i in ids]


def hf_classifier_config(
    encoder_config: EncoderArgs | Mapping[str, Any],
    probe_config: Mapping[str, Any],
    predictor_config: PredictorArgs | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`VJEPA2Config` fields of a `VJEPA2ForVideoClassification` for our encoder and probe."""
    cfg = hf_config(encoder_config, predictor_config)
    p, e = probe_config, EncoderArgs.of(encoder_config)
    expected = {"dim": e.embed_dim, "num_queries": 1, "num_heads": e.num_heads, "mlp_ratio": float(e.mlp_ratio)}
    wrong = {k: (p.get(k), v) for k, v in expected.items() if p.get(k) != v}
    if wrong:
        raise CheckpointMismatchError(
            "HF's classification head takes its width, heads and MLP ratio from the encoder and has one "
            f"query; this probe differs ({', '.join(f'{k}: {a!r}, needs {b!r}' for k, (a, b) in wrong.items())})"
        )
    labels = p.get("labels") or [f"LABEL_{i}" for i in range(int(p["num_classes"]))]
    cfg.update(
        architectures=["VJEPA2ForVideoClassification"],
        num_pooler_layers=int(p.get("depth", 3)),
        id2label={str(i): name for i, name in enumerate(labels)},
        label2id={name: i for i, name in enumerate(labels)},
    )
    return cfg


def save_hf_classifier(
    directory: str | Path,
    encoder_state: Mapping[str, Tensor],
    encoder_config: EncoderArgs | Mapping[str, Any],
    probe: torch.nn.Module,
    predictor_state: Mapping[str, Tensor] | None = None,
    predictor_config: PredictorArgs | Mapping[str, Any] | None = None,
) -> Path:
    """Write a directory `transformers.VJEPA2ForVideoClassification.from_pretrained` opens:
    our encoder (+ predictor) under `vjepa2.`, the probe as its pooler and classifier."""
    if predictor_state is not None and predictor_config is None:
        raise ValueError("predictor_state needs predictor_config")
    probe_config: Mapping[str, Any] = getattr(probe, "config", {})
    cfg = hf_classifier_config(encoder_config, probe_config, predictor_config if predictor_state is not None else None)
    tensors = {f"vjepa2.{k}": v for k, v in encoder_to_hf(encoder_state).items()}
    if predictor_state is not None:
        tensors.update({f"vjepa2.{k}": v for k, v in predictor_to_hf(predictor_state).items()})
    tensors.update(probe_to_hf(probe.state_dict()))
    return write_hf_dir(directory, tensors, cfg)


def read_hf_probe(directory: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(AttentiveClassifier arguments, state dict) of an HF `VJEPA2ForVideoClassification` directory."""
    directory = Path(directory)
    cfg = read_json(directory / CONFIG_FILE)
    archs: Sequence[str] = cfg.get("architectures") or []
    if "VJEPA2ForVideoClassification" not in archs:
        raise CheckpointMismatchError(
            f"{directory}: architectures {list(archs)} has no VJEPA2ForVideoClassification (an encoder-only "
            "VJEPA2Model has no classification head)"
        )
    return probe_config_from_hf(cfg), probe_from_hf(read_hf_weights(directory))

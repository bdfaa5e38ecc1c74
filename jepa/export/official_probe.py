"""Attentive probes saved by the official V-JEPA 2 frozen evaluation (`evals/video_classification_frozen`).

Its checkpoint is `{"classifiers": [state_dict, ...], "opt": ..., "epoch": ...}`: one
classifier per learning-rate / weight-decay setting it trained side by side, keys under
DDP's `module.` prefix, names as ours (`pooler.query_tokens`, `pooler.blocks.N.*`,
`pooler.cross_attention_block.*`, `linear.*`). The file does not say which head scored best,
so the caller picks one (`head`, default 0). Every size but the number of attention heads
can be read from the shapes; the released probes use 16 (`num_heads`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from jepa.checkpoint_files import CheckpointMismatchError, load_torch_file
from jepa.export.official import count_blocks, mlp_ratio_of, require_key, strip_prefixes

RELEASED_PROBE_HEADS = 16


def is_official_probe(obj: Any) -> bool:
    """True for a loaded official evaluation checkpoint (a `classifiers` list)."""
    return isinstance(obj, dict) and isinstance(obj.get("classifiers"), list)


def probe_config_from_state(state: dict[str, Tensor], num_heads: int = RELEASED_PROBE_HEADS) -> dict[str, Any]:
    """`AttentiveClassifier` arguments for a probe state dict in our (= the released) names."""
    queries = require_key(state, "pooler.query_tokens", "probe")
    linear = require_key(state, "linear.weight", "probe")
    dim = int(queries.shape[-1])
    if dim % num_heads:
        raise CheckpointMismatchError(f"probe width {dim} is not divisible by num_heads={num_heads}")
    fc1 = require_key(state, "pooler.cross_attention_block.mlp.fc1.weight", "probe")
    depth = count_blocks(state, "pooler.blocks.") if any(k.startswith("pooler.blocks.") for k in state) else 0
    num_queries = int(queries.shape[1])
    if int(linear.shape[1]) != dim * num_queries:
        raise CheckpointMismatchError(
            f"linear takes {linear.shape[1]} features, expected {dim} x {num_queries} queries"
        )
    return dict(
        dim=dim,
        num_classes=int(linear.shape[0]),
        num_queries=num_queries,
        num_heads=num_heads,
        depth=depth,
        mlp_ratio=mlp_ratio_of(int(fc1.shape[0]), dim),
    )


def read_official_probe(
    path: str | Path, head: int = 0, num_heads: int = RELEASED_PROBE_HEADS
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(AttentiveClassifier arguments, state dict) of head `head` of an official probe file."""
    ckpt = load_torch_file(path)
    if not is_official_probe(ckpt):
        keys = sorted(map(str, ckpt))[:20] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointMismatchError(f"{path}: not an official probe checkpoint (no 'classifiers' list; has {keys})")
    heads = ckpt["classifiers"]
    if not 0 <= head < len(heads):
        raise CheckpointMismatchError(f"{path} holds {len(heads)} classifier(s); head={head} is out of range")
    state = strip_prefixes(heads[head])
    return probe_config_from_state(state, num_heads), state

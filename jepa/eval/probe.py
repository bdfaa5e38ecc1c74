"""Attentive probe: a classifier trained on a frozen encoder's tokens (V-JEPA 2 protocol).

The probe is the released one: an `AttentivePooler` (self-attention blocks over all tokens,
then learned queries reading them through one cross-attention block) and a linear head.
Several heads (an lr x weight-decay grid) can be trained in parallel on the same batches, as
released; with a grid the reported head is the best on the evaluation set (the released
protocol, optimistic with small sets; a single head selects nothing).

At test time every sample of a video (a spatial view with its clips' tokens concatenated, or
each clip-view on its own) is classified and the softmax is averaged per video.
Probe checkpoints are a directory with `config.json` + `model.safetensors`; `load_probe`
rebuilds them with no training code.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from jepa.atomic import atomic_file, write_text_atomic
from jepa.checkpoint_files import read_json, read_safetensors
from jepa.eval.features import COMBINE_MODES, Combine, FeatureSet
from jepa.eval.metrics import average_by_group, topk_accuracy
from jepa.export.hf import is_hf_dir
from jepa.export.hf_classifier import read_hf_probe
from jepa.export.official_probe import RELEASED_PROBE_HEADS, read_official_probe
from jepa.models.attentive_pool import AttentivePooler

PROBE_FORMAT = "jepa-probe"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"


class AttentiveClassifier(nn.Module):
    """Tokens (B, N, dim) -> logits (B, num_classes): attentive pooling, then a linear head.

    `labels` (optional) names the classes in order; it travels with the probe (our format and
    HF's `id2label`).
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        num_queries: int = 1,
        num_heads: int = 16,
        depth: int = 3,
        mlp_ratio: float = 4.0,
        labels: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for {num_classes} classes")
        self.config: dict[str, Any] = dict(
            dim=dim,
            num_classes=num_classes,
            num_queries=num_queries,
            num_heads=num_heads,
            depth=depth,
            mlp_ratio=mlp_ratio,
        )
        if labels is not None:
            self.config["labels"] = [str(name) for name in labels]
        self.pooler = AttentivePooler(
            dim, num_queries=num_queries, num_heads=num_heads, depth=depth, mlp_ratio=mlp_ratio
        )
        # With several queries their outputs are concatenated, so no query's view is averaged away.
        self.linear = nn.Linear(dim * num_queries, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.linear(self.pooler(tokens).flatten(1))


@dataclass
class ProbeConfig:
    """Probe size and training; defaults are the released probe (3 + 1 blocks, 16 heads, 1 query)."""

    depth: int = 3
    num_heads: int = 16
    num_queries: int = 1
    mlp_ratio: float = 4.0
    epochs: int = 20
    batch_size: int = 32
    lrs: Sequence[float] = (1e-3,)
    weight_decays: Sequence[float] = (0.01,)
    warmup_epochs: float = 1.0
    combine: Combine = "concat"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lrs or not self.weight_decays or min(self.lrs) <= 0 or min(self.weight_decays) < 0:
            raise ValueError("need at least one lr > 0 and one weight decay >= 0")
        if self.combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {self.combine!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")


@dataclass
class HeadResult:
    lr: float
    weight_decay: float
    train_loss: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ProbeResult:
    """The chosen probe, its evaluation metrics (empty without an eval set), and every head's."""

    probe: AttentiveClassifier
    metrics: dict[str, float]
    heads: list[HeadResult]
    num_classes: int


def _labelled(features: FeatureSet, what: str) -> None:
    if (features.labels < 0).any():
        missing = int((features.labels < 0).sum())
        raise ValueError(f"{what}: {missing} of {features.num_videos} videos have no label")


def _lr_at(it: int, total: int, warmup: int, peak: float) -> float:
    if it < warmup:
        return peak * (it + 1) / warmup
    progress = (it - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.inference_mode()
def predict_videos(
    probe: nn.Module,
    features: FeatureSet,
    combine: Combine = "concat",
    batch_size: int = 64,
    device: torch.device | None = None,
) -> Tensor:
    """(num_videos, num_classes) softmax averaged over every sample of each video."""
    device = device or next(probe.parameters()).device
    was_training = probe.training
    probe.eval()
    tokens, video = features.samples(combine)
    probs = torch.cat(
        [
            probe(tokens[i : i + batch_size].to(device).float()).float().softmax(-1).cpu()
            for i in range(0, len(tokens), batch_size)
        ]
    )
    probe.train(was_training)
    return average_by_group(probs, video, features.num_videos)


def evaluate_probe(
    probe: nn.Module,
    features: FeatureSet,
    combine: Combine = "concat",
    ks: Sequence[int] = (1, 5),
    batch_size: int = 64,
) -> dict[str, float]:
    """Top-k accuracy (%) of per-video averaged predictions."""
    _labelled(features, "evaluation set")
    return topk_accuracy(predict_videos(probe, features, combine, batch_size), features.labels, ks)


def train_probe(
    train: FeatureSet,
    cfg: ProbeConfig,
    val: FeatureSet | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    labels: Sequence[str] | None = None,
) -> ProbeResult:
    """Train one probe per (lr, weight decay) on frozen `train` features; evaluate on `val`.
    `labels` names the classes; it is saved with the probe (tools/classify.py prints it)."""
    _labelled(train, "training set")
    if val is not None:
        _labelled(val, "evaluation set")
        if val.dim != train.dim:
            raise ValueError(f"train features have dim {train.dim}, evaluation features {val.dim}")
    seen = int(train.labels.max()) + 1 if val is None else max(int(train.labels.max()), int(val.labels.max())) + 1
    num_classes = num_classes or seen
    if seen > num_classes:
        raise ValueError(f"labels go up to {seen - 1} but num_classes is {num_classes}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokens, video = train.samples(cfg.combine)
    targets = train.labels[video]

    grid = list(itertools.product(cfg.lrs, cfg.weight_decays))
    heads, optims = [], []
    for lr, wd in grid:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # every head starts from the same weights
            head = AttentiveClassifier(
                train.dim, num_classes, cfg.num_queries, cfg.num_heads, cfg.depth, cfg.mlp_ratio, labels=labels
            )
        heads.append(head.to(device).train())
        optims.append(torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=wd))

    steps_per_epoch = math.ceil(len(tokens) / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)
    last_loss = [float("nan")] * len(grid)
    it = 0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(tokens), generator=generator)
        for first in range(0, len(order), cfg.batch_size):
            idx = order[first : first + cfg.batch_size]
            x, y = tokens[idx].to(device).float(), targets[idx].to(device)
            for h, (head, opt, (lr, _)) in enumerate(zip(heads, optims, grid)):
                for group in opt.param_groups:
                    group["lr"] = _lr_at(it, total, warmup, lr)
                loss = F.cross_entropy(head(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                last_loss[h] = loss.item()
            it += 1

    results = [HeadResult(lr, wd, last_loss[h]) for h, (lr, wd) in enumerate(grid)]
    best = 0
    if val is not None:
        for head, res in zip(heads, results):
            res.metrics = evaluate_probe(head, val, cfg.combine)
        best = max(range(len(heads)), key=lambda h: results[h].metrics["top1"])
    probe = heads[best].eval()
    return ProbeResult(probe, dict(results[best].metrics), results, num_classes)


def save_probe(probe: AttentiveClassifier, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `config.json` (probe arguments + `meta`: encoder source, feature settings, labels...) and weights."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in probe.state_dict().items()}
    with atomic_file(path / MODEL_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": PROBE_FORMAT})
    record = {"format": PROBE_FORMAT, "version": 1, "probe": probe.config, "meta": meta or {}}
    write_text_atomic(path / CONFIG_FILE, json.dumps(record, indent=2, default=str) + "\n")
    return path


def read_probe_config(path: str | Path) -> dict[str, Any]:
    """The `config.json` record of a probe directory (raises if it is not one)."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_FILE}; not a probe directory")
    record = read_json(config)
    if record.get("format") != PROBE_FORMAT:
        raise ValueError(f"{config}: format {record.get('format')!r} is not {PROBE_FORMAT!r}")
    return record


def load_probe(
    path: str | Path,
    device: str | torch.device | None = None,
    head: int = 0,
    num_heads: int = RELEASED_PROBE_HEADS,
) -> AttentiveClassifier:
    """Rebuild a saved probe in eval mode (strict: every tensor must fit).

    `path` is one of: a probe directory of ours; an HF `VJEPA2ForVideoClassification`
    directory, whose pooler and classifier become the probe (class names from its
    `id2label`; its encoder loads with `jepa.load_encoder(path)`); a checkpoint file of the
    official frozen evaluation, which holds several heads (`head` picks one) and does not
    record the attention heads (`num_heads`, 16 in the released probes).
    """
    if Path(path).is_file():
        config, state = read_official_probe(path, head, num_heads)
    elif is_hf_dir(path):
        config, state = read_hf_probe(path)
    else:
        config, state = read_probe_config(path)["probe"], read_safetensors(Path(path) / MODEL_FILE)
    probe = AttentiveClassifier(**config)
    probe.load_state_dict(state, strict=True)
    return probe.to(device).eval()


def probe_config_dict(cfg: ProbeConfig) -> dict[str, Any]:
    """`cfg` as plain JSON-able values, for probe metadata."""
    return json.loads(json.dumps(asdict(cfg), default=list))

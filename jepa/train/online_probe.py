"""Online probe: every N steps, how much of a small labelled set's labels the teacher's features
carry (linear probe and k-NN top-1), so a run that stops learning shows it while it runs.

The set is any labelled manifest (`trainer.online_probe.manifest`), split once into a train and
a val half by a fixed permutation; clips are taken as pretraining takes them (frames, rate, crop
size), one centred clip per video. Every rank runs it (an FSDP forward is collective); the main
process logs `probe_linear` and `probe_knn`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jepa.data.manifest import read_manifest
from jepa.eval.features import extract_features
from jepa.eval.knn import knn_evaluate
from jepa.eval.linear import linear_probe, slice_features
from jepa.export.embed import EmbedConfig


class OnlineProbe:
    """Probe the encoder on the labelled set of `cfg` (trainer.online_probe) with `data`'s clips."""

    def __init__(self, cfg: Any, data: Any, tubelet_size: int, device: torch.device) -> None:
        if cfg.every < 1 or not 0 < cfg.val_fraction < 1:
            raise ValueError(
                f"trainer.online_probe needs every >= 1 and 0 < val_fraction < 1, got {cfg.every}, {cfg.val_fraction}"
            )
        entries = read_manifest(cfg.manifest, kind="video", label_column=cfg.label_column)
        unlabelled = [e.path for e in entries if e.label is None]
        if unlabelled:
            raise ValueError(f"trainer.online_probe.manifest {cfg.manifest}: {len(unlabelled)} rows have no label")
        order = np.random.default_rng(0).permutation(len(entries))[: cfg.max_videos]
        num_val = int(round(len(order) * cfg.val_fraction))
        if num_val < 1 or len(order) - num_val < 2:
            raise ValueError(f"trainer.online_probe needs >= 2 train and >= 1 val videos, got {len(order)} in all")
        self.val, self.train = [entries[i] for i in order[:num_val]], [entries[i] for i in order[num_val:]]
        self.num_classes = max(e.label for e in entries) + 1
        if data.fps is None and data.frame_step is None:
            raise ValueError("trainer.online_probe takes clips at data.fps or data.frame_step; data.duration is set")
        self.emb = EmbedConfig(
            frames_per_clip=data.frames_per_clip,
            fps=data.fps,
            frame_step=None if data.fps is not None else data.frame_step,
            num_clips=1,
            crop_size=data.crop_size,
            short_side=data.crop_size,
            num_crops=1,
            batch_size=16,
            precision="fp32",
        )
        self.time_slices = data.frames_per_clip // tubelet_size
        self.knn_k, self.device = cfg.knn_k, device

    def __call__(self, encoder: torch.nn.Module) -> dict[str, float]:
        was_training = encoder.training
        cuda = [self.device] if self.device.type == "cuda" else []
        # Its own RNG draws (the loaders' seeds) stay out of the run's stream: same curve with or without it.
        with torch.random.fork_rng(devices=cuda):
            try:
                train = extract_features(encoder, self.train, self.emb, device=self.device)
                val = extract_features(encoder, self.val, self.emb, device=self.device)
            finally:
                encoder.train(was_training)
        linear = linear_probe(
            slice_features(train, self.time_slices),
            train.labels,
            slice_features(val, self.time_slices),
            val.labels,
            self.num_classes,
        )
        knn = knn_evaluate(train, val, k=min(self.knn_k, len(self.train)), num_classes=self.num_classes, ks=(1,))
        return {"probe_linear": linear["top1"], "probe_knn": knn["top1"]}

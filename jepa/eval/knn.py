"""k-nearest-neighbour classification on pooled embeddings.

A probe with no training: cosine similarity between L2-normalised video embeddings, the k most
similar training videos vote with weight exp(similarity / temperature) (the weighted k-NN
common in self-supervised evaluation). It needs no hyper-parameter search, so it is a quick,
noise-free check that a representation groups videos by a factor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from jepa.eval.features import FeatureSet
from jepa.eval.metrics import topk_accuracy


def knn_scores(
    train: Tensor, train_labels: Tensor, query: Tensor, num_classes: int, k: int = 20, temperature: float = 0.07
) -> Tensor:
    """(Q, num_classes) vote scores of `query` (Q, D) against `train` (M, D) with labels (M,)."""
    if train.ndim != 2 or query.ndim != 2 or train.shape[1] != query.shape[1]:
        raise ValueError(f"need train (M, D) and query (Q, D), got {tuple(train.shape)} and {tuple(query.shape)}")
    if train_labels.shape != (train.shape[0],):
        raise ValueError(f"train_labels must be ({train.shape[0]},), got {tuple(train_labels.shape)}")
    if k < 1 or temperature <= 0:
        raise ValueError(f"need k >= 1 and temperature > 0, got {k}, {temperature}")
    if train_labels.min() < 0 or train_labels.max() >= num_classes:
        raise ValueError(f"train labels must lie in [0, {num_classes})")
    k = min(k, train.shape[0])
    sim = F.normalize(query.float(), dim=1) @ F.normalize(train.float(), dim=1).T
    top_sim, top_idx = sim.topk(k, dim=1)
    weights = (top_sim / temperature).exp()
    votes = F.one_hot(train_labels[top_idx], num_classes).float() * weights[..., None]
    return votes.sum(dim=1)


def knn_evaluate(
    train: FeatureSet,
    val: FeatureSet,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Top-k accuracy (%) of k-NN on per-video pooled embeddings (mean over tokens, windows, views)."""
    for name, fs in (("training", train), ("evaluation", val)):
        if (fs.labels < 0).any():
            raise ValueError(f"{name} set: every video needs a label for k-NN")
    num_classes = num_classes or max(int(train.labels.max()), int(val.labels.max())) + 1
    scores = knn_scores(train.pooled(), train.labels, val.pooled(), num_classes, k, temperature)
    return topk_accuracy(scores, val.labels, ks)
